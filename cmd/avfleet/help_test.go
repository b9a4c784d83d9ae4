package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// helpCommands walks the command tree main builds, as the binary has it
// (cobra adds its completion command when it runs; ours replaces it). The
// help command is cobra's own and only prints these help texts.
func helpCommands(t *testing.T) []*cobra.Command {
	t.Helper()
	root := newRootCommand(&globalOptions{stdout: os.Stdout, stderr: os.Stderr})
	root.InitDefaultCompletionCmd()
	var all []*cobra.Command
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" {
			return
		}
		all = append(all, c)
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
	return all
}

// TestHelp: every command, the root included, has a one-line Short, an
// Example that uses it, and its exit codes in Long; `--help` shows them.
func TestHelp(t *testing.T) {
	cmds := helpCommands(t)
	if len(cmds) < 20 {
		t.Fatalf("only %d commands in the tree", len(cmds))
	}
	for _, c := range cmds {
		path := c.CommandPath()
		t.Run(path, func(t *testing.T) {
			switch s := c.Short; {
			case s == "":
				t.Error("no Short")
			case strings.Contains(s, "\n"):
				t.Errorf("Short is more than one line: %q", s)
			case len(s) > 100:
				t.Errorf("Short is %d characters, want a short line (at most 100)", len(s))
			}
			if !strings.Contains(c.Example, path) {
				t.Errorf("Example does not show %q:\n%s", path, c.Example)
			}
			if !strings.Contains(c.Long, "Exit codes") {
				t.Errorf("Long does not state the exit codes (\"Exit codes: ...\"):\n%s", c.Long)
			}

			args := append(strings.Fields(strings.TrimPrefix(path, "avfleet")), "--help")
			code, out := helpRun(t, args...)
			if code != exitOK {
				t.Errorf("%s --help: exit %d", path, code)
			}
			for _, want := range []string{c.Short, "Examples:", "Exit codes"} {
				if !strings.Contains(out, want) && !(want == c.Short && strings.Contains(out, c.Long)) {
					t.Errorf("%s --help does not show %q:\n%s", path, want, out)
				}
			}
		})
	}
}

// helpRun runs the command line with stdout and stderr into one file.
func helpRun(t *testing.T, args ...string) (int, string) {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	g := &globalOptions{stdout: f, stderr: f}
	root := newRootCommand(g)
	root.SetArgs(args)
	code := exitCode(root.ExecuteContext(context.Background()))
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	return code, string(b)
}
