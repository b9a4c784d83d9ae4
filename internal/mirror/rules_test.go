package mirror

import (
	"testing"

	"github.com/avfleet/avfleet/internal/cvd"
)

// hist builds a history: full versions (signed by clamav unless given), CLD
// versions and cdiff versions.
func hist(full, cld, cdiff []uint) *dbHistory {
	h := &dbHistory{name: "test", versions: map[uint]*versionFiles{}}
	for _, v := range full {
		h.at(v).full = &fileMeta{Name: "test.cvd", Version: v, Kind: cvd.KindCVD, SHA256: shaOf(v, "cvd"), SignedBy: cvd.SignedByClamAV}
	}
	for _, v := range cld {
		h.at(v).cld = &fileMeta{Name: "test.cld", Version: v, Kind: cvd.KindCLD, SHA256: shaOf(v, "cld"), SignedBy: cvd.SignedByClamAV}
	}
	for _, v := range cdiff {
		h.at(v).cdiff = &fileMeta{Name: "test.cdiff", Version: v, Kind: cvd.KindCDiff, SHA256: shaOf(v, "cdiff"), SignedBy: cvd.SignedByClamAV}
	}
	return h
}

func shaOf(v uint, kind string) string { return kind + string(rune('0'+v)) }

func TestDecideFull(t *testing.T) {
	for _, c := range []struct {
		name   string
		h      *dbHistory
		v      uint
		signer string
		sha    string
		want   Outcome
		reason string
	}{
		{"first ever", nil, 1, cvd.SignedByClamAV, "x", Accepted, ""},
		{"newer than full", hist([]uint{1}, nil, nil), 2, cvd.SignedByClamAV, "x", Accepted, ""},
		{"same version same bytes", hist([]uint{1}, nil, nil), 1, cvd.SignedByClamAV, shaOf(1, "cvd"), Ignored, ""},
		{"same version other bytes", hist([]uint{1}, nil, nil), 1, cvd.SignedByClamAV, "other", Ignored, ""},
		{"older than full", hist([]uint{1, 4}, nil, nil), 3, cvd.SignedByClamAV, "x", Rejected, "not newer than verified version 4"},
		// test-6.cvd after test-2..6.cdiff patched test-1 to 6: accepted.
		{"equal to cdiff-reached", hist([]uint{1}, []uint{2, 3, 4, 5, 6}, []uint{2, 3, 4, 5, 6}), 6, cvd.SignedByClamAV, "x", Accepted, ""},
		{"older than cdiff-reached", hist([]uint{1}, []uint{2, 3, 4, 5, 6}, []uint{2, 3, 4, 5, 6}), 5, cvd.SignedByClamAV, "x", Rejected, "not newer than verified version 6"},
		{"held older full, same version ignored", hist([]uint{1, 6}, []uint{2, 3}, nil), 1, cvd.SignedByClamAV, shaOf(1, "cvd"), Ignored, ""},
		{"clamav database continued by org key", hist([]uint{1}, nil, nil), 2, "key:abc", "x", Rejected, "database test is signed by ClamAV, this file is signed by key:abc"},
		{"clamav database continued unsigned", hist([]uint{1}, nil, nil), 2, cvd.SignedByUnsigned, "x", Rejected, "database test is signed by ClamAV, this file is signed by unsigned"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := decideFull(c.h, c.v, c.signer, c.sha)
			if d.outcome != c.want {
				t.Fatalf("outcome %s (%s), want %s", d.outcome, d.reason, c.want)
			}
			if c.reason != "" && d.reason != c.reason {
				t.Fatalf("reason %q, want %q", d.reason, c.reason)
			}
			if d.outcome == Rejected && d.check == "" {
				t.Fatal("rejection without a check")
			}
		})
	}
}

func TestDecideSignerOrgKeys(t *testing.T) {
	h := &dbHistory{name: "acme", versions: map[uint]*versionFiles{}}
	h.at(1).full = &fileMeta{Version: 1, Kind: cvd.KindCVD, SignedBy: "key:aaa"}
	if d := decideSigner(h, "key:bbb"); d.outcome != Accepted {
		t.Fatalf("rotation between configured keys: %v", d)
	}
	if d := decideSigner(h, cvd.SignedByUnsigned); d.outcome != Rejected || d.check != cvd.CheckUnsigned {
		t.Fatalf("signed database continued unsigned: %+v", d)
	}
	h.at(1).full.SignedBy = cvd.SignedByUnsigned
	if d := decideSigner(h, cvd.SignedByUnsigned); d.outcome != Accepted {
		t.Fatalf("unsigned database continued unsigned: %+v", d)
	}
}

func TestDecideCDiff(t *testing.T) {
	for _, c := range []struct {
		name string
		h    *dbHistory
		v    uint
		sha  string
		want Outcome
	}{
		{"no base", nil, 2, "x", Rejected},
		{"applies to newest", hist([]uint{1}, nil, nil), 2, "x", Accepted},
		{"applies to newest cld", hist([]uint{1}, []uint{2}, []uint{2}), 3, "x", Accepted},
		{"gap", hist([]uint{1}, nil, nil), 3, "x", Rejected},
		{"older than newest", hist([]uint{1, 6}, nil, nil), 2, "x", Rejected},
		{"same cdiff again", hist([]uint{1}, []uint{2}, []uint{2}), 2, shaOf(2, "cdiff"), Ignored},
		{"same version, other cdiff", hist([]uint{1}, []uint{2}, []uint{2}), 2, "other", Rejected},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := decideCDiff(c.h, "test", c.v, c.sha)
			if d.outcome != c.want {
				t.Fatalf("outcome %s (%s), want %s", d.outcome, d.reason, c.want)
			}
			if d.outcome == Rejected && d.check != cvd.CheckVersion {
				t.Fatalf("check %s, want %s", d.check, cvd.CheckVersion)
			}
		})
	}
}

func TestDecideCLD(t *testing.T) {
	for _, c := range []struct {
		name string
		h    *dbHistory
		v    uint
		sha  string
		want Outcome
	}{
		{"first", nil, 5, "x", Accepted},
		{"newer", hist([]uint{1}, nil, nil), 5, "x", Accepted},
		{"same cld", hist([]uint{1}, []uint{5}, nil), 5, shaOf(5, "cld"), Ignored},
		{"full of that version held", hist([]uint{5}, nil, nil), 5, "x", Ignored},
		{"older", hist([]uint{6}, nil, nil), 5, "x", Rejected},
	} {
		t.Run(c.name, func(t *testing.T) {
			if d := decideCLD(c.h, c.v, c.sha); d.outcome != c.want {
				t.Fatalf("outcome %s (%s), want %s", d.outcome, d.reason, c.want)
			}
		})
	}
}
