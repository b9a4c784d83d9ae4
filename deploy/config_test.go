package deploy

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/avfleet/avfleet/internal/config"
)

// TestExampleConfigs loads the configurations the Debian package installs
// in /etc/avfleet exactly as the daemons do (strict, validated). The package
// test runs `--check-config` on them too, once certificates exist.
func TestExampleConfigs(t *testing.T) {
	m, err := config.LoadMirror(filepath.Join(root, "deploy", "config", "mirror.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if m.DataDir != "/var/lib/avfleet/mirror" {
		t.Errorf("mirror data_dir %s: the unit's StateDirectory is /var/lib/avfleet/mirror", m.DataDir)
	}
	a, err := config.LoadAgent(filepath.Join(root, "deploy", "config", "agent.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// The unit makes exactly these writable (StateDirectory=).
	if a.StateDir != "/var/lib/avfleet/agent" || a.Scan.QuarantineDir != "/var/lib/avfleet/quarantine" {
		t.Errorf("agent state_dir %s, quarantine_dir %s: the unit's StateDirectory has /var/lib/avfleet/agent and /var/lib/avfleet/quarantine",
			a.StateDir, a.Scan.QuarantineDir)
	}
	// ProtectSystem=strict: move and remove would fail on every scanned path.
	if a.Scan.Action != "notify" && a.Scan.Action != "copy" {
		t.Errorf("scan.action %s needs a ReadWritePaths= drop-in; the example must work without one", a.Scan.Action)
	}
}

// k8sDocs decodes every document of a Kubernetes manifest into a generic map.
func k8sDocs(t *testing.T, name string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "deploy", "kubernetes", name))
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var docs []map[string]any
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if d != nil {
			docs = append(docs, d)
		}
	}
}

func dig(t *testing.T, v any, path ...any) any {
	t.Helper()
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("%v: not a mapping at %q", path, k)
			}
			v = m[k]
		case int:
			s, ok := v.([]any)
			if !ok || k >= len(s) {
				t.Fatalf("%v: no element %d", path, k)
			}
			v = s[k]
		}
	}
	return v
}

func configMapData(t *testing.T, file, name, key string) string {
	t.Helper()
	for _, d := range k8sDocs(t, file) {
		if d["kind"] == "ConfigMap" && dig(t, d, "metadata", "name") == name {
			s, ok := dig(t, d, "data", key).(string)
			if !ok {
				t.Fatalf("%s: ConfigMap %s has no %s", file, name, key)
			}
			return s
		}
	}
	t.Fatalf("%s: no ConfigMap %s", file, name)
	return ""
}

// TestKubernetesConfigs loads the configurations inside the ConfigMaps. The
// agent's is first put through the DaemonSet's own init container script,
// which writes node_name from spec.nodeName: the test runs that script.
func TestKubernetesConfigs(t *testing.T) {
	dir := t.TempDir()
	mirror := filepath.Join(dir, "mirror.yaml")
	if err := os.WriteFile(mirror, []byte(configMapData(t, "mirror.yaml", "avfleet-mirror-config", "mirror.yaml")), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := config.LoadMirror(mirror); err != nil {
		t.Fatal(err)
	}

	var ds map[string]any
	for _, d := range k8sDocs(t, "agent.yaml") {
		if d["kind"] == "DaemonSet" {
			ds = d
		}
	}
	if ds == nil {
		t.Fatal("agent.yaml: no DaemonSet")
	}
	ic := dig(t, ds, "spec", "template", "spec", "initContainers", 0)
	cmd := dig(t, ic, "command").([]any)
	if len(cmd) != 3 || cmd[0] != "/bin/sh" || cmd[1] != "-c" {
		t.Fatalf("init container command %v, want /bin/sh -c SCRIPT", cmd)
	}
	script := cmd[2].(string)
	// Point the script's mounts at temporary directories.
	for _, vm := range dig(t, ic, "volumeMounts").([]any) {
		mp := dig(t, vm, "mountPath").(string)
		local := filepath.Join(dir, dig(t, vm, "name").(string))
		if err := os.MkdirAll(local, 0o755); err != nil {
			t.Fatal(err)
		}
		script = strings.ReplaceAll(script, mp+"/", local+"/")
	}
	if err := os.WriteFile(filepath.Join(dir, "config-template", "agent.yaml"),
		[]byte(configMapData(t, "agent.yaml", "avfleet-agent-config", "agent.yaml")), 0o644); err != nil {
		t.Fatal(err)
	}
	render := func(node string) (string, error) {
		c := exec.Command("/bin/sh", "-c", script)
		c.Env = append(os.Environ(), "NODE_NAME="+node)
		out, err := c.CombinedOutput()
		return string(out), err
	}
	for _, node := range []string{"worker-1", "ip-10-0-1-23.eu-west-1.compute.internal"} {
		if out, err := render(node); err != nil {
			t.Fatalf("init container script with NODE_NAME=%s: %v\n%s", node, err, out)
		}
		a, err := config.LoadAgent(filepath.Join(dir, "config", "agent.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if a.NodeName != node {
			t.Errorf("rendered node_name %q, want %q", a.NodeName, node)
		}
	}
	for _, bad := range []string{"", "Worker_1", `x"; rm -rf /`} {
		if out, err := render(bad); err == nil {
			t.Errorf("init container script accepted NODE_NAME=%q:\n%s", bad, out)
		}
	}
}
