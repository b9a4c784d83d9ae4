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

// TestReadmeCommands keeps README.md true to the command tree: its command
// table lists every command, names only real ones, and every avfleet command
// line in its sh code blocks names a real command with flags and arguments
// that command accepts.
func TestReadmeCommands(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	table := map[string]bool{}
	var lines []string
	inSh := false
	for _, l := range strings.Split(readme, "\n") {
		trim := strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(trim, "```"):
			inSh = !inSh && trim == "```sh"
			continue
		case inSh && strings.HasPrefix(trim, "avfleet "):
			if i := strings.Index(trim, " #"); i >= 0 {
				trim = strings.TrimSpace(trim[:i])
			}
			lines = append(lines, trim)
		case strings.HasPrefix(trim, "| `avfleet "):
			cmd := strings.TrimPrefix(trim, "| `")
			table[cmd[:strings.Index(cmd, "`")]] = true
		}
	}
	cmds := helpCommands(t)
	known := map[string]bool{}
	for _, c := range cmds {
		known[c.CommandPath()] = true
		if c.Runnable() && c.HasParent() && !table[c.CommandPath()] && !table[c.Parent().CommandPath()] {
			t.Errorf("README.md's command table lacks `%s`", c.CommandPath())
		}
	}
	for p := range table {
		if !known[p] {
			t.Errorf("README.md's command table names `%s`, which does not exist", p)
		}
	}
	if len(lines) < 5 {
		t.Fatalf("found only %d avfleet command lines in README.md's sh blocks", len(lines))
	}
	for _, l := range lines {
		root := newRootCommand(&globalOptions{stdout: os.Stdout, stderr: os.Stderr})
		c, rest, err := root.Find(strings.Fields(l)[1:])
		if err != nil || !c.Runnable() {
			t.Errorf("README.md: %q: not a command (%v)", l, err)
			continue
		}
		if err := c.ParseFlags(rest); err != nil {
			t.Errorf("README.md: %q: %v", l, err)
			continue
		}
		if err := c.ValidateArgs(c.Flags().Args()); err != nil {
			t.Errorf("README.md: %q: %v", l, err)
		}
	}
}
