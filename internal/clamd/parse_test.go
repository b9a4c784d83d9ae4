package clamd

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

func TestParseAddr(t *testing.T) {
	tests := []struct {
		in      string
		want    Addr
		wantErr bool
	}{
		{"unix:///run/clamav/clamd.ctl", Addr{"unix", "/run/clamav/clamd.ctl"}, false},
		{"tcp://127.0.0.1:3310", Addr{"tcp", "127.0.0.1:3310"}, false},
		{"tcp://[::1]:3310", Addr{"tcp", "[::1]:3310"}, false},
		{"tcp://clamd.internal:3310/", Addr{"tcp", "clamd.internal:3310"}, false},
		{"unix://relative.sock", Addr{}, true},
		{"tcp://127.0.0.1", Addr{}, true},
		{"tcp://:3310", Addr{}, true},
		{"/run/clamav/clamd.ctl", Addr{}, true},
		{"http://x:1", Addr{}, true},
		{"", Addr{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseAddr(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseAddr(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if got != tt.want {
				t.Fatalf("ParseAddr(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			if err == nil && got.String() != tt.in && got.String()+"/" != tt.in {
				t.Errorf("String() = %q, want %q", got.String(), tt.in)
			}
		})
	}
}

func TestParseResult(t *testing.T) {
	tests := []struct {
		name, line, prefix string
		want               Result
		wantErr            error
	}{
		{"ok", "/tmp/a: OK", "/tmp/a", Result{Path: "/tmp/a", Status: StatusOK}, nil},
		{"found", "/tmp/a: Eicar-Test-Signature FOUND", "", Result{Path: "/tmp/a", Signature: "Eicar-Test-Signature", Status: StatusFound}, nil},
		{"found path with colon", "/tmp/a: b: Clamav.Test.File-6 FOUND", "", Result{Path: "/tmp/a: b", Signature: "Clamav.Test.File-6", Status: StatusFound}, nil},
		{"stream", "stream: Eicar-Test-Signature FOUND", "", Result{Path: "stream", Signature: "Eicar-Test-Signature", Status: StatusFound}, nil},
		{"fd", "fd[9]: OK", "", Result{Path: "fd[9]", Status: StatusOK}, nil},
		{"error with message colon", "/nonexist: File path check failure: No such file or directory. ERROR", "/nonexist",
			Result{Path: "/nonexist", Err: "File path check failure: No such file or directory.", Status: StatusError}, nil},
		{"error without prefix splits at first colon", "/x: Access denied. ERROR", "",
			Result{Path: "/x", Err: "Access denied.", Status: StatusError}, nil},
		{"error path with colon and prefix", "/d/a: b: Access denied. ERROR", "/d/a: b",
			Result{Path: "/d/a: b", Err: "Access denied.", Status: StatusError}, nil},
		{"fd error", "fd[12]: lstat() failed: Bad file descriptor. ERROR", "",
			Result{Path: "fd[12]", Err: "lstat() failed: Bad file descriptor.", Status: StatusError}, nil},
		{"size limit", "INSTREAM size limit exceeded. ERROR", "", Result{}, ErrSizeLimit},
		{"unknown", "UNKNOWN COMMAND", "", Result{}, ErrUnknownCommand},
		{"unavailable", "COMMAND UNAVAILABLE", "", Result{}, ErrCommandUnavailable},
		{"pathless error", "Command invalid inside IDSESSION. ERROR", "", Result{}, ErrClamdError},
		{"garbage", "PONG", "", Result{}, ErrProtocol},
		{"found without name", "/a:  FOUND", "", Result{}, ErrProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseResult("SCAN", tt.line, tt.prefix)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("ParseResult(%q) error = %v, want %v", tt.line, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseResult(%q): %v", tt.line, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParseResult(%q) = %+v, want %+v", tt.line, got, tt.want)
			}
		})
	}
}

func TestMergeResultsAllMatch(t *testing.T) {
	got, err := mergeResults("INSTREAM", []string{"stream: A FOUND", "stream: B FOUND"}, "")
	if err != nil {
		t.Fatal(err)
	}
	want := Result{Path: "stream", Signature: "A", Status: StatusFound, Others: []string{"B"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if _, err := mergeResults("INSTREAM", nil, ""); !errors.Is(err, ErrNoReply) {
		t.Fatalf("no lines: error = %v, want ErrNoReply", err)
	}
}

func TestParseVersion(t *testing.T) {
	tests := []struct {
		in      string
		engine  string
		daily   int
		date    time.Time
		wantErr bool
	}{
		{"ClamAV 1.4.6", "1.4.6", 0, time.Time{}, false},
		{"ClamAV 1.4.6/27500/Tue Dec 10 09:32:02 2024", "1.4.6", 27500, time.Date(2024, 12, 10, 9, 32, 2, 0, time.Local), false},
		{"ClamAV 1.4.6/27500/Tue Dec  3 09:32:02 2024", "1.4.6", 27500, time.Date(2024, 12, 3, 9, 32, 2, 0, time.Local), false},
		{"ClamAV 0.103.12/26000/Mon Jan  1 00:00:00 2024", "0.103.12", 26000, time.Date(2024, 1, 1, 0, 0, 0, 0, time.Local), false},
		{"ClamAV 1.4.6/x/Tue Dec 10 09:32:02 2024", "", 0, time.Time{}, true},
		{"ClamAV 1.4.6/27500", "", 0, time.Time{}, true},
		{"ClamAV 1.4.6/27500/yesterday", "", 0, time.Time{}, true},
		{"ClamAV ", "", 0, time.Time{}, true},
		{"PONG", "", 0, time.Time{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			v, err := ParseVersion(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseVersion(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if v.Engine != tt.engine || v.Daily != tt.daily || !v.DailyTime.Equal(tt.date) || v.Raw != tt.in {
				t.Fatalf("ParseVersion(%q) = %+v", tt.in, v)
			}
		})
	}
}

const stats146 = "POOLS: 1\n\nSTATE: VALID PRIMARY\nTHREADS: live 2  idle 0 max 2 idle-timeout 30\n" +
	"QUEUE: 1 items min_wait: 0.000084 max_wait: 0.000084 avg_wait: 0.000084\n\tSTATS 0.000006 \n\tFILDES 0.000485 fd[9]\n\n" +
	"MEMSTATS: heap N/A mmap N/A used N/A free N/A releasable N/A pools 1 pools_used 5.922M pools_total 5.999M\nEND"

func TestParseStats(t *testing.T) {
	st, err := ParseStats(stats146)
	if err != nil {
		t.Fatal(err)
	}
	want := []Pool{{State: "VALID PRIMARY", Live: 2, Idle: 0, Max: 2, IdleTimeoutSeconds: 30, Queue: 1}}
	if !reflect.DeepEqual(st.Pools, want) {
		t.Fatalf("pools = %+v, want %+v", st.Pools, want)
	}
	m := st.Memory
	if m.Heap != -1 || m.Used != -1 || m.Pools != 1 || m.PoolsUsed != mb(5.922) || m.PoolsTotal != mb(5.999) {
		t.Fatalf("memory = %+v", m)
	}
	if live, _, max := st.Threads(); live != 2 || max != 2 || st.QueueLen() != 1 {
		t.Fatalf("Threads/QueueLen = %d %d %d", live, max, st.QueueLen())
	}

	glibc := "POOLS: 2\n\nSTATE: VALID PRIMARY\nTHREADS: live 1  idle 3 max 10 idle-timeout 30\nQUEUE: 0 items\n\n" +
		"STATE: VALID SECONDARY\nTHREADS: live 0  idle 0 max 10 idle-timeout 30\nQUEUE: 4 items\n\n" +
		"MEMSTATS: heap 10.500M mmap 0.250M used 9.000M free 1.500M releasable 0.125M pools 2 pools_used 600.000M pools_total 700.000M\nEND"
	st, err = ParseStats(glibc)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Pools) != 2 || st.QueueLen() != 4 || st.Memory.Heap != mb(10.5) || st.Memory.Pools != 2 {
		t.Fatalf("stats = %+v", st)
	}

	for _, bad := range []string{
		"",
		"POOLS: x\nEND",
		"POOLS: 1\nTHREADS: live 1\nEND",
		"POOLS: 1\nSTATE: X\nQUEUE: many items\nEND",
		"POOLS: 1\nMEMSTATS: heap 1G\nEND",
		"POOLS: 1\nMEMSTATS: heap NaNM\nEND",
		"POOLS: 1\n", // no END
	} {
		if _, err := ParseStats(bad); err == nil {
			t.Errorf("ParseStats(%q) succeeded", bad)
		}
	}
}

func FuzzParseResult(f *testing.F) {
	for _, s := range []string{"/a: OK", "stream: X FOUND", "fd[1]: a: b ERROR", "INSTREAM size limit exceeded. ERROR", ": FOUND", " ERROR"} {
		f.Add(s, "/a")
	}
	f.Fuzz(func(t *testing.T, line, prefix string) {
		r, err := ParseResult("SCAN", line, prefix)
		if err != nil {
			return
		}
		switch r.Status {
		case StatusFound:
			if r.Signature == "" {
				t.Fatalf("FOUND without signature from %q", line)
			}
		case StatusError:
			if r.Err == "" && line != r.Path+":  ERROR" {
				t.Fatalf("ERROR without message from %q: %+v", line, r)
			}
		}
	})
}

func FuzzParseVersion(f *testing.F) {
	f.Add("ClamAV 1.4.6/27500/Tue Dec 10 09:32:02 2024")
	f.Add("ClamAV 1.4.6")
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseVersion(s)
		if err == nil && (v.Engine == "" || v.Daily < 0) {
			t.Fatalf("ParseVersion(%q) = %+v", s, v)
		}
	})
}

func FuzzParseStats(f *testing.F) {
	f.Add(stats146)
	f.Add("POOLS: 1\nMEMSTATS: pools 1 pools_used 1.0M\nEND")
	f.Fuzz(func(t *testing.T, s string) {
		st, err := ParseStats(s)
		if err != nil {
			return
		}
		m := st.Memory
		for _, v := range []int64{m.Heap, m.Mmap, m.Used, m.Free, m.Releasable, m.PoolsUsed, m.PoolsTotal} {
			if v < -1 {
				t.Fatalf("negative size from %q: %+v", s, m)
			}
		}
	})
}

func FuzzParseAddr(f *testing.F) {
	f.Add("unix:///run/clamd.ctl")
	f.Add("tcp://127.0.0.1:3310")
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAddr(s)
		if err != nil {
			return
		}
		b, err := ParseAddr(a.String())
		if err != nil || a != b {
			t.Fatalf("round trip of %q: %+v -> %q -> %+v, %v", s, a, a.String(), b, err)
		}
	})
}

func mb(f float64) int64 { return int64(f * (1 << 20)) }
