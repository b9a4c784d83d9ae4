package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/avfleet/avfleet/internal/demo"
	"github.com/avfleet/avfleet/internal/testutil"
)

// TestDemoCommand runs `avfleet demo --keep` and then two of the commands it
// prints, against what it kept: the mirror's status and the database.
func TestDemoCommand(t *testing.T) {
	testutil.NeedCommand(t, "clamd")
	t.Setenv("TMPDIR", t.TempDir())
	code, out, errs := runCLICtx(t, context.Background(), "demo", "--keep")
	if code != exitOK {
		t.Fatalf("demo --keep: exit %d\n%s\n%s", code, out, errs)
	}
	kept := regexp.MustCompile(`(?m)^Kept (\S+)\.`).FindStringSubmatch(out)
	if kept == nil {
		t.Fatalf("no 'Kept DIR' line:\n%s", out)
	}
	t.Cleanup(func() { os.RemoveAll(kept[1]) })

	status := regexp.MustCompile(`(?m)^  \S+ (mirror status --config \S+)$`).FindStringSubmatch(out)
	info := regexp.MustCompile(`(?m)^  \S+ (cvd info --key \S+ \S+)$`).FindStringSubmatch(out)
	if status == nil || info == nil {
		t.Fatalf("the printed commands lack mirror status or cvd info:\n%s", out)
	}
	code, sout, serr := runCLICtx(t, context.Background(), strings.Fields(status[1])...)
	if code != exitOK || !strings.Contains(sout, "nodes: 1 total, 1 reporting (24 h), 1 current") || !regexp.MustCompile(`(?m)^demo\s+2\s`).MatchString(sout) {
		t.Errorf("%s: exit %d, want demo version 2 served and 1 current node\n%s%s", status[1], code, sout, serr)
	}
	code, iout, ierr := runCLICtx(t, context.Background(), strings.Fields(info[1])...)
	if code != exitOK || !regexp.MustCompile(`status\s+valid, signed by key:`).MatchString(iout) {
		t.Errorf("%s: exit %d, want status valid, signed by the demo key\n%s%s", info[1], code, iout, ierr)
	}
	if !strings.HasPrefix(kept[1], filepath.Clean(os.Getenv("TMPDIR"))) {
		t.Errorf("demo directory %s is not under TMPDIR", kept[1])
	}
}

func TestDemoWithoutClamdExitsTwo(t *testing.T) {
	g := &globalOptions{logLevel: "info"}
	var out strings.Builder
	err := runDemo(context.Background(), g, &out, demo.Options{ClamdBinary: filepath.Join(t.TempDir(), "clamd")})
	if exitCode(err) != exitError {
		t.Errorf("exit %d, want %d", exitCode(err), exitError)
	}
	if err == nil || !strings.Contains(err.Error(), demo.InstallHint) {
		t.Errorf("error %v does not say what to install (%s)", err, demo.InstallHint)
	}
}
