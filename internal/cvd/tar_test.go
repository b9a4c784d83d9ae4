package cvd

import (
	"bytes"
	"io"
	"testing"
)

func TestParseOctal(t *testing.T) {
	for in, want := range map[string]int64{
		"00000000017\x00": 15, "17 \x00\x00": 15, "  17\x00": 15, "0\x00\x00": 0, "77777777777\x00": 8589934591,
	} {
		var f [12]byte
		copy(f[:], in)
		got, err := parseOctal(f[:])
		if err != nil || got != want {
			t.Errorf("%q: %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"-1\x00", "+7\x00", "8\x00", "1 2\x00", "\x00", "0x10\x00", "\x80\x00\x00"} {
		var f [12]byte
		copy(f[:], in)
		if v, err := parseOctal(f[:]); err == nil {
			t.Errorf("%q accepted as %d", in, v)
		}
	}
}

func TestTarRoundTrip(t *testing.T) {
	var b bytes.Buffer
	tw := &tarWriter{w: &b, mtime: 1700000000}
	files := map[string]string{"a.hdb": "x\n", "COPYING": "", "b.ndb": string(bytes.Repeat([]byte("y"), 1500))}
	for _, n := range []string{"COPYING", "a.hdb", "b.ndb"} {
		if err := tw.add(n, int64(len(files[n])), bytes.NewReader([]byte(files[n]))); err != nil {
			t.Fatal(err)
		}
	}
	tw.close()
	tr := newTarReader(&b, Limits{})
	var got []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		c, err := io.ReadAll(tr)
		if err != nil || string(c) != files[h.Name] || int64(len(c)) != h.Size {
			t.Fatalf("%s: %q %v", h.Name, c, err)
		}
		got = append(got, h.Name)
	}
	if len(got) != 3 {
		t.Errorf("entries %v", got)
	}
}
