package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// lines maps a dotted key ("upstream.timeout") to the line it is on, so
// validation errors can point into the file too.
type lines map[string]int

// decodeFile decodes YAML over the defaults already in v. Unknown keys,
// duplicate keys and values of the wrong type are errors naming
// file:line and the full key, all of them at once.
func decodeFile(path string, v any) (lines, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return decode(path, b, v)
}

var yamlLineErr = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// posError prefixes a yaml error with the file, turning its "line N: msg"
// into the compiler-style "file:N: msg" that editors can jump to.
func posError(name string, err error) error {
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else if s := yamlLineErr.FindStringSubmatch(strings.TrimPrefix(err.Error(), "yaml: ")); s != nil {
		// The parser names the line where the construct it was reading
		// began, which can be a line or two before the actual mistake.
		msgs = []string{fmt.Sprintf("line %s: YAML syntax error at or after this line: %s", s[1], s[2])}
	} else {
		msgs = []string{"YAML syntax error: " + strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	var out []error
	for _, m := range msgs {
		m = strings.TrimPrefix(m, "yaml: ")
		if s := yamlLineErr.FindStringSubmatch(m); s != nil {
			out = append(out, fmt.Errorf("%s:%s: %s", name, s[1], s[2]))
		} else {
			out = append(out, fmt.Errorf("%s: %s", name, m))
		}
	}
	return errors.Join(out...)
}

func decode(name string, b []byte, v any) (lines, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return lines{}, nil // an empty file: all defaults
		}
		return nil, posError(name, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, fmt.Errorf("%s:%d: a second YAML document (after ---) is not allowed", name, extra.Line)
	} else if !errors.Is(err, io.EOF) {
		return nil, posError(name, err)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		return lines{}, nil // only comments
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s:%d: the file must be a mapping of keys (key: value), not %s", name, root.Line, describe(root))
	}
	c := &checker{name: name, lines: lines{}}
	c.check(root, reflect.TypeOf(v).Elem(), []int{}, "")
	if len(c.errs) > 0 {
		sort.SliceStable(c.errs, func(i, j int) bool { return c.errs[i].line < c.errs[j].line })
		var errs []error
		for _, e := range c.errs {
			errs = append(errs, e.err)
		}
		return nil, errors.Join(errs...)
	}
	// The checker found nothing, so this strict decode is only a backstop.
	if err := root.Decode(v); err != nil {
		return nil, posError(name, err)
	}
	// YAML leaves a field untouched for "key:" with no value; an operator
	// who writes `client_ca:` means "empty", not "keep the default".
	rv := reflect.ValueOf(v).Elem()
	for _, idx := range c.nulls {
		rv.FieldByIndex(idx).SetZero()
	}
	return c.lines, nil
}

type posErr struct {
	line int
	err  error
}

type checker struct {
	name  string
	lines lines
	nulls [][]int // field index paths of scalar keys given no value
	errs  []posErr
}

func (c *checker) errorf(n *yaml.Node, format string, a ...any) {
	c.errs = append(c.errs, posErr{n.Line, fmt.Errorf("%s:%d: %s", c.name, n.Line, fmt.Sprintf(format, a...))})
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

// isLeaf reports whether t is decoded as one value rather than as a mapping
// of further keys.
func isLeaf(t reflect.Type) bool {
	return t.Kind() != reflect.Struct || reflect.PointerTo(t).Implements(unmarshalerType)
}

// check walks node against type t. idx is the field index path from the
// top-level struct (nil inside slices, where nulls are not tracked).
func (c *checker) check(n *yaml.Node, t reflect.Type, idx []int, path string) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if !isLeaf(t) {
		c.checkMapping(n, t, idx, path)
		return
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		if idx != nil {
			c.nulls = append(c.nulls, idx)
		}
		return
	}
	if t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode && !reflect.PointerTo(t).Implements(unmarshalerType) {
		for i, item := range n.Content {
			c.check(item, t.Elem(), nil, fmt.Sprintf("%s[%d]", path, i))
		}
		return
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		// yaml would silently truncate 1.5 to 1.
		if t != reflect.TypeFor[Duration]() && (n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int") {
			c.errorf(n, "%s: want %s, got %s", path, want(t), describe(n))
			return
		}
	}
	if err := n.Decode(reflect.New(t).Interface()); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			c.errorf(n, "%s: want %s, got %s", path, want(t), describe(n))
		} else {
			c.errorf(n, "%s: %s", path, strings.TrimPrefix(err.Error(), "yaml: "))
		}
	}
}

func (c *checker) checkMapping(n *yaml.Node, t reflect.Type, idx []int, path string) {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // "tls:" with everything below commented out: keep the defaults
	}
	if n.Kind != yaml.MappingNode {
		c.errorf(n, "%s: want a mapping of keys (key: value), got %s", path, describe(n))
		return
	}
	fields := map[string]reflect.StructField{}
	var names []string
	for _, f := range reflect.VisibleFields(t) {
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || tag == "" || tag == "-" {
			continue
		}
		fields[tag] = f
		names = append(names, tag)
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			c.errorf(k, "%s: keys must be plain words, got %s", orTop(path), describe(k))
			continue
		}
		if k.Value == "<<" { // merge key: the merged mappings are checked as part of this one
			merged := []*yaml.Node{val}
			if val.Kind == yaml.SequenceNode {
				merged = val.Content
			}
			for _, m := range merged {
				c.checkMapping(m, t, idx, path)
			}
			continue
		}
		full := join(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			c.errorf(k, "key %q appears twice (first on line %d)", full, first)
			continue
		}
		seen[k.Value] = k.Line
		f, ok := fields[k.Value]
		if !ok {
			msg := fmt.Sprintf("unknown key %q", full)
			if s := suggest(k.Value, names); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", join(path, s))
			}
			c.errorf(k, "%s", msg)
			continue
		}
		c.lines[full] = k.Line
		var fidx []int
		if idx != nil {
			fidx = append(append([]int(nil), idx...), f.Index...)
		}
		c.check(val, f.Type, fidx, full)
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func orTop(path string) string {
	if path == "" {
		return "top level"
	}
	return path
}

// want names what a field of type t accepts, in an operator's words.
func want(t reflect.Type) string {
	if t == reflect.TypeFor[Duration]() {
		return "a duration like 30s, 5m or 24h"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Slice:
		return "a list of " + strings.TrimPrefix(strings.TrimPrefix(want(t.Elem()), "a "), "an ") + "s"
	}
	return t.String()
}

// describe says what a node holds, quoting a scalar's text.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.ScalarNode:
		if n.ShortTag() == "!!null" {
			return "no value"
		}
		return strconv.Quote(n.Value)
	case yaml.AliasNode:
		return "an alias"
	}
	return "something else"
}

// suggest returns the known key closest to a mistyped one, if it is close.
func suggest(key string, known []string) string {
	best, bestD := "", 3 // at most two edits away
	for _, k := range known {
		if d := editDistance(key, k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// withLines puts file:line in front of each validation error whose key is
// in the file, and the file name in front of the others (defaults).
func withLines(name string, ln lines, err error) error {
	if err == nil {
		return nil
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	out := make([]error, 0, len(errs))
	for _, e := range errs {
		key, _, _ := strings.Cut(e.Error(), ": ")
		if l, ok := ln[key]; ok {
			out = append(out, fmt.Errorf("%s:%d: %w", name, l, e))
		} else {
			out = append(out, fmt.Errorf("%s: %w", name, e))
		}
	}
	return errors.Join(out...)
}
