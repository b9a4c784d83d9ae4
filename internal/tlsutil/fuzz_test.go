package tlsutil

import (
	"os"
	"path/filepath"
	"testing"
)

// The PEM files are read from disk by the mirror and the agent; a damaged
// file must give an error, never a panic.
func FuzzParsePEM(f *testing.F) {
	dir := f.TempDir()
	if err := Init(dir, nil, []string{"n"}, 0); err != nil {
		f.Fatal(err)
	}
	for _, n := range []string{"ca.crt", "ca.key", "n.crt", "n.key"} {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Add([]byte("-----BEGIN EC PRIVATE KEY-----\n\n-----END EC PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		parseKey(b)
		parsePool("fuzz.pem", b)
	})
}
