package config

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// load loads a testdata file as mirror.yaml or agent.yaml by its name.
func load(path string) (effective func() ([]byte, error), err error) {
	if strings.HasPrefix(filepath.Base(path), "mirror-") {
		c, err := LoadMirror(path)
		if err != nil {
			return nil, err
		}
		return c.Effective, nil
	}
	c, err := LoadAgent(path)
	if err != nil {
		return nil, err
	}
	return c.Effective, nil
}

// wants returns the "# want: " lines of a bad file, with FILE replaced by
// its path: exactly the lines its error must have.
func wants(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var w []string
	for _, l := range strings.Split(string(b), "\n") {
		if s, ok := strings.CutPrefix(l, "# want: "); ok {
			w = append(w, strings.ReplaceAll(s, "FILE", path))
		}
	}
	return w
}

func TestTestdata(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var good, bad int
	for _, path := range files {
		name := filepath.Base(path)
		if !strings.HasPrefix(name, "mirror-") && !strings.HasPrefix(name, "agent-") {
			t.Errorf("%s: name must start with mirror- or agent-", name)
			continue
		}
		t.Run(name, func(t *testing.T) {
			eff, err := load(path)
			switch {
			case strings.HasSuffix(name, ".good.yaml"):
				good++
				if err != nil {
					t.Fatalf("good file refused:\n%v", err)
				}
				if _, err := eff(); err != nil {
					t.Fatal(err)
				}
			case strings.HasSuffix(name, ".bad.yaml"):
				bad++
				want := wants(t, path)
				if len(want) == 0 {
					t.Fatal("bad file without a '# want: ' line")
				}
				if err == nil {
					t.Fatalf("bad file accepted; want:\n%s", strings.Join(want, "\n"))
				}
				got := strings.Split(err.Error(), "\n")
				sort.Strings(got)
				sort.Strings(want)
				if !slices.Equal(got, want) {
					t.Errorf("error lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
				}
			default:
				t.Fatalf("name must end in .good.yaml or .bad.yaml")
			}
		})
	}
	if good < 4 || bad < 20 {
		t.Errorf("only %d good and %d bad files found", good, bad)
	}
}

func TestMirrorFull(t *testing.T) {
	path := filepath.Join("testdata", "mirror-full.good.yaml")
	c, err := LoadMirror(path)
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := filepath.Abs("testdata")
	want := Mirror{
		DataDir:     filepath.Join(dir, "data"),
		Listen:      "0.0.0.0:7501",
		TLS:         TLS{Cert: filepath.Join(dir, "pki/server.crt"), Key: filepath.Join(dir, "pki/server.key"), ClientCA: ""},
		PlainListen: "127.0.0.1:8080",
		AdminListen: "127.0.0.1:7502",
		Upstream: Upstream{
			Enabled:      true,
			URLs:         []string{"https://database.clamav.net", "http://clamav-mirror.example.org/clamav"},
			Databases:    []string{"main", "daily"},
			ChecksPerDay: 24,
			DNSTXT:       "",
			Proxy:        "http://user:secret@proxy.example.org:3128",
			Timeout:      Duration(90 * time.Second),
		},
		Trust: Trust{
			CVDKeys:       []string{filepath.Join(dir, "keys/org.pub.pem"), "/etc/avfleet/other.pub.pem"},
			SignCertsDir:  filepath.Join(dir, "certs"),
			RequireSign:   true,
			AllowUnsigned: true,
		},
		Retention: Retention{CDiffs: 0, Versions: 2},
		path:      path,
	}
	if !reflect.DeepEqual(*c, want) {
		t.Errorf("got\n%+v\nwant\n%+v", *c, want)
	}
	if c.Path() != path {
		t.Errorf("Path() = %q", c.Path())
	}
	// The file sets every key to a non-default value, so that a key the
	// decoder ignored would show up here.
	assertAllDiffer(t, reflect.ValueOf(*c), reflect.ValueOf(DefaultMirror()), "")
}

func TestAgentFull(t *testing.T) {
	path := filepath.Join("testdata", "agent-full.good.yaml")
	c, err := LoadAgent(path)
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := filepath.Abs("testdata")
	want := Agent{
		NodeName: "db-7.example.org",
		StateDir: filepath.Join(dir, "state"),
		Mirror: MirrorEndpoint{
			URLs: []string{"https://mirror-a.internal:6501", "https://10.0.0.5:6501"},
			CA:   filepath.Join(dir, "pki/ca.crt"), Cert: filepath.Join(dir, "pki/db-7.crt"), Key: filepath.Join(dir, "pki/db-7.key"),
			ChecksPerDay: 48, Timeout: Duration(10 * time.Second),
		},
		Clamd: Clamd{Mode: "external", Binary: "/usr/local/sbin/clamd", Socket: "unix:///run/clamav/clamd.ctl", MaxThreads: 4},
		Scan: Scan{
			Schedule:      Schedule{Interval: "hourly", Earliest: "22:30", Latest: "04:15"},
			Paths:         []string{"/srv", "/home"},
			Exclude:       []string{`^/srv/cache/`, `\.iso$`},
			OneFilesystem: true,
			Action:        "move",
			QuarantineDir: filepath.Join(dir, "quarantine"),
		},
		Allowlist: Allowlist{
			Signatures: []string{"Eicar-Test-Signature", "Win.Test.EICAR_HDB-1"},
			SHA256:     []string{"275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f:68"},
		},
		Limits: Limits{CPUPercent: 250, MemoryBytes: 2 << 30},
		Report: Report{Syslog: "tls://logs.example.org:6514", StaleAfter: Duration(36 * time.Hour), HistoryDays: 730},
		Trust: Trust{
			CVDKeys: []string{filepath.Join(dir, "org.pub.pem")}, SignCertsDir: "/etc/avfleet/sign-certs",
			RequireSign: true, AllowUnsigned: true,
		},
		path: path,
	}
	if !reflect.DeepEqual(*c, want) {
		t.Errorf("got\n%+v\nwant\n%+v", *c, want)
	}
	d := DefaultAgent()
	d.Scan.Schedule.Cron = "x" // the one key this file leaves at its default
	assertAllDiffer(t, reflect.ValueOf(*c), reflect.ValueOf(d), "")
}

// assertAllDiffer fails for every exported leaf field equal in got and def.
func assertAllDiffer(t *testing.T, got, def reflect.Value, path string) {
	t.Helper()
	for i := 0; i < got.NumField(); i++ {
		f := got.Type().Field(i)
		if !f.IsExported() {
			continue
		}
		key := join(path, strings.Split(f.Tag.Get("yaml"), ",")[0])
		if !isLeaf(f.Type) {
			assertAllDiffer(t, got.Field(i), def.Field(i), key)
			continue
		}
		if reflect.DeepEqual(got.Field(i).Interface(), def.Field(i).Interface()) {
			t.Errorf("%s is at its default; the full test file must set every key", key)
		}
	}
}

func TestAgentDetails(t *testing.T) {
	c, err := LoadAgent(filepath.Join("testdata", "agent-cron.good.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// "exclude:" with no value means none, not the default list.
	if len(c.Scan.Exclude) != 0 {
		t.Errorf("exclude with no value: %q, want none", c.Scan.Exclude)
	}
	if c.Scan.Schedule.Cron != "*/30 1-5 * * mon-fri" || c.Limits.CPUPercent != 20 || c.Limits.MemoryBytes != 512<<20 {
		t.Errorf("schedule %+v limits %+v", c.Scan.Schedule, c.Limits)
	}

	// An empty node_name becomes the host name.
	c, err = LoadAgent(filepath.Join("testdata", "agent-empty.good.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := os.Hostname(); c.NodeName != h || h == "" {
		t.Errorf("node_name %q, host name %q", c.NodeName, h)
	}
	if !reflect.DeepEqual(c.Scan, DefaultAgent().Scan) {
		t.Errorf("empty file changed scan: %+v", c.Scan)
	}
}

func TestRelativeConfigPath(t *testing.T) {
	// A config given as a relative path still yields absolute paths, so a
	// daemon that changes directory later finds its files.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "agent.yaml"), []byte("node_name: n\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	c, err := LoadAgent("agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	real, _ := filepath.EvalSymlinks(dir)
	for _, p := range []string{c.Mirror.CA, c.Mirror.Cert, c.Mirror.Key} {
		if !filepath.IsAbs(p) {
			t.Errorf("%q is not absolute", p)
		}
		if d := filepath.Dir(p); d != dir && d != real {
			t.Errorf("%q is not in the config's directory %s", p, dir)
		}
	}
	if _, err := LoadAgent(filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: %v", err)
	}
}

func TestDefaultsAreValid(t *testing.T) {
	m := DefaultMirror()
	if err := m.Validate(); err != nil {
		t.Errorf("mirror defaults: %v", err)
	}
	a := DefaultAgent()
	if err := a.Validate(); err != nil {
		t.Errorf("agent defaults: %v", err)
	}
}

func TestEffectiveRoundTrip(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.good.yaml"))
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			// Printed, written elsewhere and loaded again, the effective
			// configuration must print the same.
			out := filepath.Join(t.TempDir(), filepath.Base(path))
			first, err := effectiveOf(path)
			if err != nil {
				t.Fatal(err)
			}
			header, body, _ := strings.Cut(string(first), "\n")
			if header != "# effective configuration of "+path+": defaults filled in, relative paths resolved" {
				t.Errorf("header %q", header)
			}
			if err := os.WriteFile(out, first, 0o644); err != nil {
				t.Fatal(err)
			}
			second, err := effectiveOf(out)
			if err != nil {
				t.Fatalf("effective output does not load: %v\n%s", err, first)
			}
			_, body2, _ := strings.Cut(string(second), "\n")
			if body != body2 {
				t.Errorf("round trip changed the configuration:\n%s\nthen\n%s", body, body2)
			}
		})
	}
}

func effectiveOf(path string) ([]byte, error) {
	eff, err := load(path)
	if err != nil {
		return nil, err
	}
	return eff()
}

func TestDurationString(t *testing.T) {
	for d, want := range map[time.Duration]string{
		24 * time.Hour: "24h", 90 * time.Second: "1m30s", 30 * time.Second: "30s",
		time.Hour + time.Minute: "1h1m", 0: "0s", 1500 * time.Millisecond: "1.5s", 2 * time.Minute: "2m",
	} {
		if got := Duration(d).String(); got != want {
			t.Errorf("%v: %q, want %q", d, got, want)
		}
		if back, err := time.ParseDuration(Duration(d).String()); err != nil || back != d {
			t.Errorf("%v does not parse back: %v %v", d, back, err)
		}
	}
}

func TestSuggest(t *testing.T) {
	keys := []string{"listen", "plain_listen", "admin_listen", "data_dir"}
	for in, want := range map[string]string{"listn": "listen", "data-dir": "data_dir", "lisetn": "listen", "upstream": "", "x": ""} {
		if got := suggest(in, keys); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("a: &x [*x]\n"))
	f.Add([]byte("<<: [{listen: 1}, 3]\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m := DefaultMirror()
		if _, err := decode("fuzz.yaml", b, &m); err == nil {
			m.Validate()
			m.Effective()
		}
		a := DefaultAgent()
		if _, err := decode("fuzz.yaml", b, &a); err == nil {
			a.Validate()
			a.Effective()
		}
	})
}
