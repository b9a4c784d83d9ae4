package config

import (
	"bufio"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const docPath = "../../docs/configuration.md"

// docRow is one documented key: `key.path` | `default` | meaning.
var docRow = regexp.MustCompile("^\\| `([a-z0-9_.]+)` \\| `([^`]*)` \\|")

// docTables reads the key tables of docs/configuration.md, per file
// ("mirror.yaml", "agent.yaml"): key -> documented default.
func docTables(t *testing.T) map[string]map[string]string {
	t.Helper()
	f, err := os.Open(docPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tables := map[string]map[string]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		l := sc.Text()
		if strings.HasPrefix(l, "## ") {
			section = strings.TrimPrefix(l, "## ")
			continue
		}
		if section != "mirror.yaml" && section != "agent.yaml" || !strings.HasPrefix(l, "| `") {
			continue
		}
		m := docRow.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("%s:%d: a key row must read | `key` | `default` | meaning |", docPath, n)
			continue
		}
		if tables[section] == nil {
			tables[section] = map[string]string{}
		}
		if _, dup := tables[section][m[1]]; dup {
			t.Errorf("%s:%d: %s documented twice", docPath, n, m[1])
		}
		tables[section][m[1]] = m[2]
	}
	return tables
}

// leafKeys lists every dotted yaml key of a config struct with its field.
func leafKeys(v reflect.Value, prefix string, out map[string]reflect.Value) {
	for i := 0; i < v.NumField(); i++ {
		f := v.Type().Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || tag == "" || tag == "-" {
			continue
		}
		key := join(prefix, tag)
		if isLeaf(f.Type) {
			out[key] = v.Field(i)
		} else {
			leafKeys(v.Field(i), key, out)
		}
	}
}

// TestDocumentation keeps docs/configuration.md and the structs in step:
// every key documented, nothing documented that does not exist, and each
// documented default equal to the real one.
func TestDocumentation(t *testing.T) {
	tables := docTables(t)
	for file, def := range map[string]any{"mirror.yaml": DefaultMirror(), "agent.yaml": DefaultAgent()} {
		keys := map[string]reflect.Value{}
		leafKeys(reflect.ValueOf(def), "", keys)
		doc := tables[file]
		var missing, extra []string
		for k := range keys {
			if _, ok := doc[k]; !ok {
				missing = append(missing, k)
			}
		}
		for k := range doc {
			if _, ok := keys[k]; !ok {
				extra = append(extra, k)
			}
		}
		sort.Strings(missing)
		sort.Strings(extra)
		for _, k := range missing {
			t.Errorf("%s: key %s is not documented in %s", file, k, docPath)
		}
		for _, k := range extra {
			t.Errorf("%s: %s documents %s, which the configuration does not have", file, docPath, k)
		}
		for k, text := range doc {
			v, ok := keys[k]
			if !ok {
				continue
			}
			got := reflect.New(v.Type())
			var n yaml.Node
			err := yaml.Unmarshal([]byte(text), &n)
			if err == nil {
				err = n.Decode(got.Interface())
			}
			if err != nil {
				t.Errorf("%s: %s: documented default `%s` is not a valid value: %v", file, k, text, err)
				continue
			}
			if !sameValue(got.Elem(), v) {
				t.Errorf("%s: %s: documented default `%s`, real default %#v", file, k, text, v.Interface())
			}
		}
	}
}

// sameValue is DeepEqual with nil and empty slices equal.
func sameValue(a, b reflect.Value) bool {
	if a.Kind() == reflect.Slice && a.Len() == 0 && b.Len() == 0 {
		return true
	}
	return reflect.DeepEqual(a.Interface(), b.Interface())
}
