package demo

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// eicar returns the EICAR test file. It is assembled at run time so that no
// file of the repository is itself detected by virus scanners.
func eicar() []byte {
	return []byte(strings.Join([]string{`X5O!P%@AP[4\PZX54(P^)`, `7CC)7}$EICAR-STANDARD-`, `ANTIVIRUS-TEST-`, `FILE!$H+H*`}, ""))
}

// Hash signatures (.hdb lines are MD5:SIZE:NAME) of the two standard test
// files: EICAR, and clam.exe from ClamAV's own test suite (Debian package
// clamav-testfiles).
const (
	eicarMD5   = "44d88612fea8a8f36de82e1278abb02f"
	eicarSize  = 68
	clamExeMD5 = "aa15bcf478d165efd2065190eb473bcb"
	clamExeLen = 544
)

// clamExePath is where clamav-testfiles installs clam.exe.
const clamExePath = "/usr/share/clamav-testfiles/clam.exe"

// Markers that the body signatures look for anywhere in a file.
const (
	markerV1 = "AVFLEET-DEMO-MARKER"
	markerV2 = "AVFLEET-DEMO-NEW-IN-V2"
)

// Signature names as written in the database. clamd reports signatures that
// do not come from ClamAV's own databases with ".UNOFFICIAL" appended.
const (
	sigEICAR   = "Demo.Test.EICAR-HDB"
	sigClamExe = "Demo.Test.ClamExe-HDB"
	sigMarker  = "Demo.Test.Marker-NDB"
	sigNewInV2 = "Demo.Test.NewInV2-NDB"
)

// signatureFiles writes the demo database's signature files for a version
// into dir and returns their paths: version 1 has the two hash signatures and
// one body signature, version 2 adds a second body signature.
func signatureFiles(dir string, version uint) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	hdb := fmt.Sprintf("%s:%d:%s\n%s:%d:%s\n", eicarMD5, eicarSize, sigEICAR, clamExeMD5, clamExeLen, sigClamExe)
	// .ndb: NAME:TARGET:OFFSET:HEX (target 0 = any file, offset * = anywhere).
	ndb := fmt.Sprintf("%s:0:*:%s\n", sigMarker, hex.EncodeToString([]byte(markerV1)))
	if version >= 2 {
		ndb += fmt.Sprintf("%s:0:*:%s\n", sigNewInV2, hex.EncodeToString([]byte(markerV2)))
	}
	files := []struct{ name, data string }{{"demo.hdb", hdb}, {"demo.ndb", ndb}}
	var paths []string
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if err := os.WriteFile(p, []byte(f.data), 0o644); err != nil {
			return nil, err
		}
		paths = append(paths, p)
	}
	return paths, nil
}

// sample is one file the demo scans and what each database version must say.
type sample struct {
	name   string
	what   string
	data   []byte
	wantV1 string // signature expected with version 1, "" = clean
	wantV2 string
}

// samples builds the sample files. clam.exe is included only when the
// clamav-testfiles package provides it (its bytes are ClamAV's, not ours).
func samples() ([]sample, string, error) {
	e := eicar()
	if fmt.Sprintf("%x", md5.Sum(e)) != eicarMD5 || len(e) != eicarSize {
		return nil, "", fmt.Errorf("internal error: the assembled EICAR file does not have its well-known MD5")
	}
	zipped, err := zipOf("eicar.com", e)
	if err != nil {
		return nil, "", err
	}
	tgz, err := tarGzOf("eicar.com", e)
	if err != nil {
		return nil, "", err
	}
	s := []sample{
		{name: "clean.txt", what: "an ordinary text file", data: []byte("Minutes of the weekly meeting: nothing to report.\n")},
		{name: "eicar.com", what: "the EICAR test file (made just now from parts)", data: e, wantV1: sigEICAR, wantV2: sigEICAR},
		{name: "eicar.zip", what: "EICAR inside a zip archive", data: zipped, wantV1: sigEICAR, wantV2: sigEICAR},
		{name: "eicar.tar.gz", what: "EICAR inside a tar.gz archive", data: tgz, wantV1: sigEICAR, wantV2: sigEICAR},
		{name: "notes.txt", what: "text with " + markerV1 + " in the middle (body signature)",
			data: []byte("Quarterly notes\n\nSee attachment " + markerV1 + " for details.\n"), wantV1: sigMarker, wantV2: sigMarker},
		{name: "new-threat.txt", what: "text with " + markerV2 + " (only version 2 has a signature for it)",
			data: []byte("Invoice 2291\n" + markerV2 + "\nPlease pay within 30 days.\n"), wantV2: sigNewInV2},
	}
	note := ""
	switch b, err := os.ReadFile(clamExePath); {
	case err != nil:
		note = fmt.Sprintf("no clam.exe sample: %s is missing (apt-get install clamav-testfiles adds it)", clamExePath)
	case fmt.Sprintf("%x", md5.Sum(b)) != clamExeMD5 || len(b) != clamExeLen:
		note = fmt.Sprintf("no clam.exe sample: %s is not the clam.exe the signature describes", clamExePath)
	default:
		s = append(s, sample{name: "clam.exe", what: "ClamAV's harmless test program (from clamav-testfiles)", data: b, wantV1: sigClamExe, wantV2: sigClamExe})
	}
	return s, note, nil
}

func zipOf(name string, data []byte) ([]byte, error) {
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	w, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Deflate, Modified: time.Now()})
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(data); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func tarGzOf(name string, data []byte) ([]byte, error) {
	var b bytes.Buffer
	gz := gzip.NewWriter(&b)
	tw := tar.NewWriter(gz)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: time.Now(), Typeflag: tar.TypeReg}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(data); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
