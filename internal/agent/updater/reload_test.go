package updater

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/avfleet/avfleet/internal/clamd"
	"github.com/avfleet/avfleet/internal/clamd/clamdtest"
)

func TestSocketReloader(t *testing.T) {
	const newer = "ClamAV 1.4.6/27501/Wed Dec 11 09:32:02 2024"
	cases := []struct {
		name    string
		want    map[string]uint
		reload  func(s *clamdtest.Server) // what the fake does on RELOAD
		wantErr error
		timeout time.Duration
	}{
		{"daily confirmed", map[string]uint{"daily": 27501, "main": 62}, func(s *clamdtest.Server) {
			go func() { time.Sleep(100 * time.Millisecond); s.SetVersion(newer) }()
		}, nil, 10 * time.Second},
		{"daily never changes", map[string]uint{"daily": 27501}, func(*clamdtest.Server) {}, ErrReloadUnconfirmed, 700 * time.Millisecond},
		{"no daily: answering is enough", map[string]uint{"test": 6}, func(*clamdtest.Server) {}, nil, 10 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := clamdtest.NewUnix(t)
			s.Handle("RELOAD", func(clamdtest.Request) clamdtest.Response {
				tc.reload(s)
				return clamdtest.Response{Replies: []string{"RELOADING"}}
			})
			c, err := clamd.NewClient(s.Addr)
			if err != nil {
				t.Fatal(err)
			}
			_, err = SocketReloader{Client: c, Timeout: tc.timeout}.Reload(context.Background(), tc.want)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			cmds := s.Commands()
			if len(cmds) == 0 || cmds[0] != "RELOAD" {
				t.Errorf("commands %v: want RELOAD first", cmds)
			}
		})
	}
	t.Run("clamd gone", func(t *testing.T) {
		s := clamdtest.NewUnix(t)
		c, _ := clamd.NewClient(s.Addr)
		s.Close()
		if _, err := (SocketReloader{Client: c, Timeout: 300 * time.Millisecond}).Reload(context.Background(), nil); err == nil {
			t.Fatal("reload of a dead clamd succeeded")
		}
	})
}
