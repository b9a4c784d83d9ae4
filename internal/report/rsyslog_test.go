package report

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/avfleet/avfleet/internal/testutil"
)

// rsyslog is a real rsyslogd listening on loopback UDP and TCP. It writes one
// JSON line per message: rsyslog's own view (protocol version, MSGID, the
// structured data its RFC 5424 parser extracted, that data decoded by
// mmpstrucdata) and the raw message as received.
type rsyslog struct {
	udpAddr, tcpAddr string
	out              string
	offset           int64
	partial          []byte
}

type rsyslogLine struct {
	Version  string `json:"version"`
	MsgID    string `json:"msgid"`
	SD       string `json:"sd"`
	SDParsed string `json:"sdparsed"`
	Raw      string `json:"raw"`
}

const rsyslogConf = `global(workDirectory="{{DIR}}" maxMessageSize="64k")
module(load="mmpstrucdata")
module(load="imudp")
module(load="imtcp")
template(name="avfleet_test" type="list" option.jsonf="on") {
  property(outname="version" name="protocol-version" format="jsonf")
  property(outname="msgid" name="msgid" format="jsonf")
  property(outname="sd" name="structured-data" format="jsonf")
  property(outname="sdparsed" name="$!rfc5424-sd" format="jsonf")
  property(outname="raw" name="rawmsg" format="jsonf")
}
ruleset(name="avfleet_test") {
  action(type="mmpstrucdata")
  action(type="omfile" file="{{DIR}}/received.log" template="avfleet_test")
}
input(type="imudp" address="127.0.0.1" port="{{UDP}}" ruleset="avfleet_test" rcvBufSize="4m")
input(type="imtcp" address="127.0.0.1" port="{{TCP}}" ruleset="avfleet_test")
`

func freePort(t testing.TB, network string) string {
	t.Helper()
	var addr net.Addr
	if network == "udp" {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr = pc.LocalAddr()
		pc.Close()
	} else {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr = ln.Addr()
		ln.Close()
	}
	_, port, _ := net.SplitHostPort(addr.String())
	return port
}

// startRsyslog runs rsyslogd -n with a generated configuration in a temp dir
// and kills it when the test ends.
func startRsyslog(t testing.TB) *rsyslog {
	t.Helper()
	bin := testutil.NeedCommand(t, "rsyslogd")
	dir := t.TempDir()
	udp, tcp := freePort(t, "udp"), freePort(t, "tcp")
	conf := strings.NewReplacer("{{DIR}}", dir, "{{UDP}}", udp, "{{TCP}}", tcp).Replace(rsyslogConf)
	confFile := filepath.Join(dir, "rsyslog.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "-n", "-f", confFile, "-i", filepath.Join(dir, "rsyslogd.pid"))
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start rsyslogd: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("rsyslogd output:\n%s", stderr.String())
		}
	})
	r := &rsyslog{udpAddr: "127.0.0.1:" + udp, tcpAddr: "127.0.0.1:" + tcp, out: filepath.Join(dir, "received.log")}

	// Ready when the TCP port accepts and a UDP probe has been written out.
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("rsyslogd exited at start:\n%s", stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("rsyslogd not ready in 15s:\n%s", stderr.String())
		}
		if c, err := net.Dial("tcp", r.tcpAddr); err == nil {
			c.Close()
			if u, err := net.Dial("udp", r.udpAddr); err == nil {
				u.Write([]byte("<14>1 - - avfleet-test - PROBE - probe"))
				u.Close()
			}
			if _, n := r.consume(t); n > 0 {
				return r
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// read returns the complete lines written since the last read, without probes.
func (r *rsyslog) read(t testing.TB) []rsyslogLine {
	t.Helper()
	out, _ := r.consume(t)
	return out
}

// consume reads the new complete lines: those that are not probes, and how
// many lines there were in all.
func (r *rsyslog) consume(t testing.TB) (lines []rsyslogLine, total int) {
	t.Helper()
	f, err := os.Open(r.out)
	if os.IsNotExist(err) {
		return nil, 0
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(r.offset, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	r.offset += int64(len(b))
	b = append(r.partial, b...)
	end := bytes.LastIndexByte(b, '\n') + 1
	r.partial = append([]byte(nil), b[end:]...)
	for _, line := range bytes.Split(b[:end], []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		total++
		var l rsyslogLine
		if err := json.Unmarshal(line, &l); err != nil {
			t.Fatalf("rsyslog wrote %q: %v", line, err)
		}
		if l.MsgID != "PROBE" {
			lines = append(lines, l)
		}
	}
	return lines, total
}

// waitLines collects n lines (or fails after timeout).
func (r *rsyslog) waitLines(t testing.TB, n int, timeout time.Duration) []rsyslogLine {
	t.Helper()
	var got []rsyslogLine
	deadline := time.Now().Add(timeout)
	for len(got) < n {
		got = append(got, r.read(t)...)
		if len(got) >= n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rsyslog received %d of %d messages", len(got), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return got
}

// TestRsyslogReceivesDetections is issue 5's acceptance check: syslog lines
// arrive at a real rsyslog and parse as RFC 5424 with the detection fields,
// both by our strict parser (on the raw message) and by rsyslog's own.
func TestRsyslogReceivesDetections(t *testing.T) {
	r := startRsyslog(t)
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			addr := r.udpAddr
			if network == "tcp" {
				addr = r.tcpAddr
			}
			s := newTestSyslog(t, network+"://"+addr+"?facility=local4", SyslogOptions{})
			startSyslog(t, s)
			d := testDetection(1)
			d.Node = "node-" + network
			scan := sampleEvents()[2].(ScanSummary)
			scan.Node = d.Node
			s.Report(t.Context(), d)
			s.Report(t.Context(), scan)
			lines := r.waitLines(t, 2, 10*time.Second)

			if lines[0].Version != "1" || lines[0].MsgID != "DETECTION" {
				t.Errorf("rsyslog did not parse it as RFC 5424: version %q msgid %q", lines[0].Version, lines[0].MsgID)
			}
			m, err := parseRFC5424([]byte(lines[0].Raw))
			if err != nil {
				t.Fatalf("raw message as received: %v\n%s", err, lines[0].Raw)
			}
			checkDetection(t, m, d)
			if m.facility != 20 || m.severity != int(SeverityWarning) {
				t.Errorf("facility %d severity %d", m.facility, m.severity)
			}

			// rsyslog's mmpstrucdata unescaped the parameters itself.
			var sd map[string]map[string]string
			if err := json.Unmarshal([]byte(lines[0].SDParsed), &sd); err != nil {
				t.Fatalf("rsyslog's structured data %q: %v", lines[0].SDParsed, err)
			}
			fields := sd[SDID]
			for name, want := range map[string]string{
				"node": d.Node, "container": d.Container, "path": d.Path, "container_path": d.ContainerPath,
				"signature": d.Signature, "action": d.Action, "action_result": d.ActionResult,
				"quarantine_id": d.QuarantineID, "db_versions": "daily:27000,main:62", "scan_id": d.ScanID,
			} {
				if fields[name] != want {
					t.Errorf("rsyslog parsed %s = %q, want %q", name, fields[name], want)
				}
			}
			if sd["meta"]["sequenceid"] != "1" {
				t.Errorf("rsyslog parsed meta %v", sd["meta"])
			}

			if lines[1].MsgID != "SCAN" {
				t.Errorf("second message has msgid %q", lines[1].MsgID)
			}
			ms, err := parseRFC5424([]byte(lines[1].Raw))
			if err != nil {
				t.Fatal(err)
			}
			for name, want := range map[string]string{"files": "1000", "bytes": "1073741824", "detections": "1",
				"incremental_hits": "900", "skipped_by_reason": "excluded:3,too_large:2", "duration_seconds": "90", "trigger": "schedule"} {
				if got, _ := ms.param(SDID, name); got != want {
					t.Errorf("scan %s = %q, want %q", name, got, want)
				}
			}
		})
	}
}

// BenchmarkRsyslog measures end-to-end throughput to a real rsyslog: from the
// first Report until rsyslog has written the message out. UDP may lose
// messages under load; delivered_% says how many arrived.
func BenchmarkRsyslog(b *testing.B) {
	for _, network := range []string{"udp", "tcp"} {
		b.Run(network, func(b *testing.B) {
			r := startRsyslog(b)
			addr := r.udpAddr
			if network == "tcp" {
				addr = r.tcpAddr
			}
			target, err := ParseSyslogURL(network + "://" + addr)
			if err != nil {
				b.Fatal(err)
			}
			s, err := NewSyslog(target, SyslogOptions{QueueSize: b.N + 1})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- s.Run(ctx) }()
			defer func() { cancel(); <-done }()
			d := testDetection(1)

			b.ResetTimer()
			start := time.Now()
			for range b.N {
				s.Report(ctx, d)
			}
			got, last, lastChange := 0, 0, time.Now()
			for got < b.N && time.Since(lastChange) < time.Second {
				got += len(r.read(b))
				if got != last {
					last, lastChange = got, time.Now()
				}
				time.Sleep(5 * time.Millisecond)
			}
			el := time.Since(start)
			b.StopTimer()
			if network == "tcp" && got != b.N {
				b.Fatalf("rsyslog received %d of %d over TCP", got, b.N)
			}
			if got == b.N {
				el = lastChange.Sub(start)
			}
			b.ReportMetric(float64(got)/el.Seconds(), "msgs/s")
			b.ReportMetric(100*float64(got)/float64(b.N), "delivered_%")
			if st := s.Stats(); st.Dropped != 0 {
				b.Logf("%s: %+v", network, st)
			}
		})
	}
}
