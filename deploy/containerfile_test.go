package deploy

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/avfleet/avfleet/internal/testutil"
)

// The image cannot be built here (no container engine), so this checks
// what can be checked without building it: the instructions the manifests
// and the Makefile rely on.
func TestContainerfile(t *testing.T) {
	f, err := os.Open(filepath.Join(root, "deploy", "Containerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	instr := map[string][]string{}
	sc := bufio.NewScanner(f)
	var cont string
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if cont == "" && (l == "" || strings.HasPrefix(l, "#")) {
			continue
		}
		if strings.HasSuffix(l, "\\") {
			cont += strings.TrimSuffix(l, "\\") + " "
			continue
		}
		l, cont = cont+l, ""
		op, rest, _ := strings.Cut(l, " ")
		instr[strings.ToUpper(op)] = append(instr[strings.ToUpper(op)], strings.TrimSpace(rest))
	}
	for op := range instr {
		switch op {
		case "FROM", "RUN", "COPY", "LABEL", "ENTRYPOINT", "CMD":
		default:
			t.Errorf("unexpected instruction %s", op)
		}
	}
	if from := instr["FROM"]; len(from) != 1 || !strings.HasSuffix(from[0], "debian:bookworm-slim") {
		t.Errorf("FROM %v, want one stage from debian:bookworm-slim", from)
	}
	if run := strings.Join(instr["RUN"], " "); !strings.Contains(run, "clamav-daemon") {
		t.Error("the image must install clamav-daemon (clamd)")
	}
	// The static binary `make build` writes.
	if cp := instr["COPY"]; len(cp) != 1 || cp[0] != "bin/avfleet /usr/bin/avfleet" {
		t.Errorf("COPY %v, want bin/avfleet /usr/bin/avfleet", cp)
	}
	// The manifests pass only args: the entrypoint must be avfleet itself.
	var ep []string
	if len(instr["ENTRYPOINT"]) != 1 || json.Unmarshal([]byte(instr["ENTRYPOINT"][0]), &ep) != nil ||
		len(ep) != 1 || ep[0] != "/usr/bin/avfleet" {
		t.Errorf("ENTRYPOINT %v, want [\"/usr/bin/avfleet\"] (exec form)", instr["ENTRYPOINT"])
	}
	// The agent's ConfigMap runs /usr/sbin/clamd: that is where Debian's
	// clamav-daemon puts it (same package, same path on this machine).
	dpkg := testutil.NeedCommand(t, "dpkg")
	out, errOut, err := run(t, dpkg, "-S", "/usr/sbin/clamd")
	if err != nil || !strings.HasPrefix(out, "clamav-daemon:") {
		t.Errorf("dpkg -S /usr/sbin/clamd: %q %s %v; the manifests' clamd.binary assumes clamav-daemon's /usr/sbin/clamd", out, errOut, err)
	}
	if !strings.Contains(configMapData(t, "agent.yaml", "avfleet-agent-config", "agent.yaml"), "binary: /usr/sbin/clamd") {
		t.Error("the agent ConfigMap's clamd.binary is not /usr/sbin/clamd")
	}
}
