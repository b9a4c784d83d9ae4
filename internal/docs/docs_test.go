package docs

import (
	"bufio"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/avfleet/avfleet/internal/testutil"
)

const (
	troubleshooting = "docs/troubleshooting.md"
	allowFile       = "undocumented.txt"
)

// message is one operator-visible message in the code.
type message struct {
	pos    string // file:line, relative to the repository
	format string // the literal as in the code
	kind   string // "error" (returned), "log" (logged at WARN or ERROR), "reason"
}

// sourceDirs are where operator-visible messages come from: the commands
// and every package under internal/ except the test helpers.
var skipDirs = map[string]bool{"internal/testutil": true, "internal/docs": true, "internal/clamd/clamdtest": true}

// notMessages are helpers with a format parameter that print a story rather
// than build an error: their strings are output, shown as they are.
var notMessages = map[string]bool{"line": true, "detail": true, "step": true}

// formatHelpers finds every function with a parameter named format of type
// string (usagef, failf, the verifier's errorf helpers, ...): the argument
// in that position is a message. name -> parameter index.
func formatHelpers(files []*ast.File) map[string]int {
	h := map[string]int{}
	for _, f := range files {
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || notMessages[fd.Name.Name] {
				continue
			}
			i := 0
			for _, p := range fd.Type.Params.List {
				id, isIdent := p.Type.(*ast.Ident)
				for _, n := range p.Names {
					if n.Name == "format" && isIdent && id.Name == "string" {
						h[fd.Name.Name] = i
					}
					i++
				}
				if len(p.Names) == 0 {
					i++
				}
			}
		}
	}
	return h
}

// parseSources parses the non-test Go files of the project's packages.
func parseSources(t *testing.T, root string) (*token.FileSet, []*ast.File) {
	t.Helper()
	fset := token.NewFileSet()
	var files []*ast.File
	for _, top := range []string{"cmd", "internal"} {
		err := filepath.WalkDir(filepath.Join(root, top), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			if d.IsDir() {
				if skipDirs[rel] || d.Name() == "testdata" {
					return filepath.SkipDir
				}
				return nil
			}
			if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return nil
			}
			f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			files = append(files, f)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return fset, files
}

// collectMessages finds the literals of errors.New, fmt.Errorf and the
// format helpers, of log calls at WARN and ERROR level, and of fmt.Sprintf
// given as a Reason or Error field (rejection reasons the mirror prints).
func collectMessages(t *testing.T, root string) []message {
	fset, files := parseSources(t, root)
	helpers := formatHelpers(files)
	var out []message
	add := func(e ast.Expr, kind string) {
		lit, ok := e.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return
		}
		s, err := strconv.Unquote(lit.Value)
		if err != nil {
			t.Fatal(err)
		}
		p := fset.Position(lit.Pos())
		rel, _ := filepath.Rel(root, p.Filename)
		out = append(out, message{pos: fmt.Sprintf("%s:%d", rel, p.Line), format: s, kind: kind})
	}
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CallExpr:
				name, pkg := callee(n)
				switch {
				case pkg == "fmt" && name == "Errorf", pkg == "errors" && name == "New":
					if len(n.Args) > 0 {
						add(n.Args[0], "error")
					}
				case pkg != "fmt" && (name == "Warn" || name == "Error") && len(n.Args) > 0 && len(n.Args)%2 == 1:
					add(n.Args[0], "log")
				default:
					if i, ok := helpers[name]; ok && pkg != "fmt" && i < len(n.Args) {
						add(n.Args[i], "error")
					}
				}
			case *ast.KeyValueExpr:
				k, ok := n.Key.(*ast.Ident)
				if !ok || (k.Name != "Reason" && k.Name != "Error") {
					return true
				}
				if c, ok := n.Value.(*ast.CallExpr); ok {
					if name, pkg := callee(c); pkg == "fmt" && name == "Sprintf" && len(c.Args) > 0 {
						add(c.Args[0], "reason")
					}
				}
			}
			return true
		})
	}
	return out
}

// callee names a call's function: ("Errorf", "fmt"), ("usagef", ""), or
// ("Warn", "log") for a method call on anything.
func callee(c *ast.CallExpr) (name, pkg string) {
	switch f := c.Fun.(type) {
	case *ast.Ident:
		return f.Name, ""
	case *ast.SelectorExpr:
		if id, ok := f.X.(*ast.Ident); ok {
			return f.Sel.Name, id.Name
		}
		return f.Sel.Name, "."
	}
	return "", ""
}

// verb matches a format verb; what it stands for is never in the docs
// literally (they write FILE, N, ... or elide it).
var verb = regexp.MustCompile(`%[-+# 0]*(\[\d+\])?(\d+|\*)?(\.(\d+|\*)?)?[a-zA-Z]`)

// wrapperWords is how many words of context a message may add in front of
// the error it wraps ("read node reports from state.db: %w") and still
// count as a wrapper: the wrapped error (an OS, TLS or SQLite error, or one
// of ours, collected itself) is what the operator must understand, and the
// prefix only says what was being done.
const wrapperWords = 5

// endsInWrapped matches a format whose last thing is the wrapped error.
var endsInWrapped = regexp.MustCompile(`%[wv]\s*$`)

// fragments are the literal pieces of a message that the documentation
// must contain: what remains between the verbs, without the punctuation
// at their ends. A piece of a single short word ("verify", "tls") is the
// context a wrapper adds, not a message of its own, and is left out; a
// message with no piece left, or only a short prefix before the error it
// wraps, is such a wrapper (nil).
func fragments(format string) []string {
	if endsInWrapped.MatchString(format) {
		words := 0
		for _, w := range strings.Fields(verb.ReplaceAllString(format, " ")) {
			if strings.IndexFunc(w, unicode.IsLetter) >= 0 {
				words++
			}
		}
		if words <= wrapperWords {
			return nil
		}
	}
	var out []string
	for _, p := range verb.Split(strings.ReplaceAll(format, "%%", "\x00"), -1) {
		p = normalize(strings.ReplaceAll(p, "\x00", "%"))
		p = strings.TrimFunc(p, func(r rune) bool { return unicode.IsSpace(r) || strings.ContainsRune(`:;,."'()[]=`, r) })
		words, letters := 0, 0
		for _, w := range strings.Fields(p) {
			if strings.IndexFunc(w, unicode.IsLetter) >= 0 {
				words++
			}
		}
		for _, r := range p {
			if unicode.IsLetter(r) {
				letters++
			}
		}
		if words >= 2 || letters >= 8 {
			out = append(out, p)
		}
	}
	return out
}

var spaces = regexp.MustCompile(`\s+`)

// normalize makes code and markdown comparable: no markup, one space,
// lower case.
func normalize(s string) string {
	s = strings.NewReplacer("`", "", "**", "", `\|`, "|", "\\_", "_").Replace(s)
	return strings.ToLower(strings.TrimSpace(spaces.ReplaceAllString(s, " ")))
}

// docBlocks splits the troubleshooting guide into the units a message must
// be explained in: each table row, each list item, each paragraph.
func docBlocks(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var blocks []string
	var cur []string
	flush := func() {
		if len(cur) > 0 {
			blocks = append(blocks, normalize(strings.Join(cur, " ")))
			cur = nil
		}
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		trim := strings.TrimSpace(l)
		switch {
		case trim == "":
			flush()
		case strings.HasPrefix(trim, "|"):
			flush()
			blocks = append(blocks, normalize(trim))
		case strings.HasPrefix(trim, "- "), strings.HasPrefix(trim, "* "), strings.HasPrefix(trim, "#"):
			flush()
			cur = append(cur, trim)
		default:
			cur = append(cur, trim)
		}
	}
	flush()
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return blocks
}

// documented reports whether one block of the guide holds every fragment.
func documented(frags []string, blocks []string) bool {
	for _, b := range blocks {
		all := true
		for _, fr := range frags {
			if !strings.Contains(b, fr) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

// allowEntry is a line of undocumented.txt: a message literal, Go-quoted,
// then "--" and why it needs no entry in the guide.
type allowEntry struct {
	line   int
	reason string
	used   bool
}

func readAllowlist(t *testing.T) map[string]*allowEntry {
	t.Helper()
	f, err := os.Open(allowFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := map[string]*allowEntry{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		q, err := strconv.QuotedPrefix(l)
		if err != nil {
			t.Errorf("%s:%d: want a Go-quoted message literal first: %v", allowFile, n, err)
			continue
		}
		s, _ := strconv.Unquote(q)
		reason := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l[len(q):]), "--"))
		if !strings.HasPrefix(strings.TrimSpace(l[len(q):]), "--") || len(reason) < 10 {
			t.Errorf("%s:%d: after the literal, write -- and why it needs no documentation", allowFile, n)
		}
		if _, dup := m[s]; dup {
			t.Errorf("%s:%d: %q listed twice", allowFile, n, s)
		}
		m[s] = &allowEntry{line: n, reason: reason}
	}
	return m
}

// TestTroubleshootingCoversMessages fails for every operator-visible message
// that docs/troubleshooting.md does not explain (all its literal pieces in
// one table row, list item or paragraph) and that undocumented.txt does not
// excuse; and for every excuse that is no longer needed.
func TestTroubleshootingCoversMessages(t *testing.T) {
	root := testutil.RepoRoot()
	msgs := collectMessages(t, root)
	if len(msgs) < 300 {
		t.Fatalf("found only %d messages: is the collector broken?", len(msgs))
	}
	blocks := docBlocks(t, filepath.Join(root, troubleshooting))
	allow := readAllowlist(t)
	var missing []string
	wrappers, documentedN, excused := 0, 0, 0
	seen := map[string]bool{}
	for _, m := range msgs {
		frags := fragments(m.format)
		if len(frags) == 0 {
			wrappers++
			continue
		}
		ok := documented(frags, blocks)
		if a := allow[m.format]; a != nil {
			a.used = true
			if ok {
				t.Errorf("%s:%d: %q is documented now: remove it from the list", allowFile, a.line, m.format)
			}
			excused++
			continue
		}
		if ok {
			documentedN++
			continue
		}
		if !seen[m.format] {
			seen[m.format] = true
			missing = append(missing, fmt.Sprintf("%s: %s %q (looked for %q)", m.pos, m.kind, m.format, frags))
		}
	}
	for s, a := range allow {
		if !a.used {
			t.Errorf("%s:%d: %q is not in the code any more: remove it from the list", allowFile, a.line, s)
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("not in %s: %s", troubleshooting, m)
	}
	if len(missing) > 0 {
		t.Logf("Say in %s what each message means and what to do (its literal text, with FILE, N, ... for the values),\n"+
			"or, for a message an operator cannot see or that needs no explanation, add it to internal/docs/%s with the reason.", troubleshooting, allowFile)
	}
	t.Logf("%d messages: %d documented, %d excused in %s, %d wrappers (no text of their own), %d missing",
		len(msgs), documentedN, excused, allowFile, wrappers, len(missing))
}

// TestFragments pins what the matcher asks of the documentation.
func TestFragments(t *testing.T) {
	for _, c := range []struct {
		format string
		want   []string
	}{
		{"verify %s: %w", nil},
		{"%s: %w", nil},
		{"header version %q is not a number", []string{"header version", "is not a number"}},
		{"body: gzip bomb: %d bytes inflated from %d (more than %dx)", []string{"body: gzip bomb", "bytes inflated from", "more than"}},
		{"certs init: %d days is longer than the CA's own %d days", []string{"certs init", "days is longer than the ca's own"}},
		{"interrupted: %w", nil},
		{"read node reports from state.db: %w", nil},
		{"wait for clamd to answer PING within %s: %w", []string{"wait for clamd to answer ping within"}},
		{"interrupted: %w (see %s)", []string{"interrupted"}},
		{"disk is 100%% full: %s", []string{"disk is 100% full"}},
	} {
		got := fragments(c.format)
		if strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("fragments(%q) = %q, want %q", c.format, got, c.want)
		}
	}
	blocks := []string{normalize("| `header version \"x\" is not a number` | damaged |"), normalize("- `body: gzip\n  bomb: N bytes inflated from M (more than 100x)`")}
	if !documented(fragments("header version %q is not a number"), blocks) || !documented(fragments("body: gzip bomb: %d bytes inflated from %d (more than %dx)"), blocks) {
		t.Error("documented messages not found")
	}
	if documented(fragments("header version %q is not a database"), blocks) {
		t.Error("an undocumented message counts as documented")
	}
}

// TestTroubleshootingCoversChecks: every verification check name (the CHECK
// in "verify FILE: CHECK: REASON", the check label of the mirror's metrics)
// has its entry.
func TestTroubleshootingCoversChecks(t *testing.T) {
	root := testutil.RepoRoot()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, filepath.Join(root, "internal", "cvd", "api.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(root, troubleshooting))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			vs := s.(*ast.ValueSpec)
			if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "Check" {
				continue
			}
			for _, v := range vs.Values {
				lit, ok := v.(*ast.BasicLit)
				if !ok {
					continue
				}
				name, _ := strconv.Unquote(lit.Value)
				n++
				if !strings.Contains(string(doc), "**"+name+"**") {
					t.Errorf("check %q (internal/cvd/api.go) has no **%s** entry in %s", name, name, troubleshooting)
				}
			}
		}
	}
	if n < 10 {
		t.Fatalf("found only %d checks in internal/cvd/api.go", n)
	}
}

// TestQuickStartIsWhatCIRuns: the two commands README.md's first screen
// gives are the ones .ci/run runs, so the README's promise is tested.
func TestQuickStartIsWhatCIRuns(t *testing.T) {
	root := testutil.RepoRoot()
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	ci, err := os.ReadFile(filepath.Join(root, ".ci", "run"))
	if err != nil {
		t.Fatal(err)
	}
	block := regexp.MustCompile("(?s)```sh\n(.*?)```").FindSubmatch(readme)
	if block == nil {
		t.Fatal("README.md has no sh block")
	}
	var readmeCmds, ciCmds []string
	for _, l := range strings.Split(string(block[1]), "\n") {
		if f := strings.TrimSpace(strings.SplitN(l, "#", 2)[0]); f != "" {
			readmeCmds = append(readmeCmds, f)
		}
	}
	for _, l := range strings.Split(string(ci), "\n") {
		if strings.HasPrefix(l, "make ") {
			ciCmds = append(ciCmds, strings.TrimSpace(l))
		}
	}
	sort.Strings(readmeCmds)
	sort.Strings(ciCmds)
	if strings.Join(readmeCmds, "|") != strings.Join(ciCmds, "|") {
		t.Errorf("README.md's first commands %q, .ci/run runs %q", readmeCmds, ciCmds)
	}
}

// TestReadmeQuotesBenchResults: every figure README.md's Performance
// section puts in bold is what bench/RESULTS.md says now, so a new
// benchmark run that changes a headline makes the README change too.
func TestReadmeQuotesBenchResults(t *testing.T) {
	root := testutil.RepoRoot()
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	results, err := os.ReadFile(filepath.Join(root, "bench", "RESULTS.md"))
	if err != nil {
		t.Fatal(err)
	}
	sec := regexp.MustCompile(`(?s)\n## Performance\n(.*?)\n## `).FindSubmatch(readme)
	if sec == nil {
		t.Fatal("README.md has no Performance section")
	}
	figures := regexp.MustCompile(`\*\*([0-9][^*]*)\*\*`).FindAllSubmatch(sec[1], -1)
	if len(figures) < 4 {
		t.Fatalf("README.md's Performance section quotes only %d figures", len(figures))
	}
	for _, f := range figures {
		fig := strings.TrimSuffix(string(f[1]), "×")
		if !strings.Contains(string(results), fig) {
			t.Errorf("README.md's Performance section quotes %q, which bench/RESULTS.md does not say (any more): update the README", fig)
		}
	}
}
