package scan

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/avfleet/avfleet/internal/agent/quarantine"
	"github.com/avfleet/avfleet/internal/report"
)

// detect applies the configured action to an infected file and reports it.
// f is the descriptor clamd scanned: a copy takes exactly those bytes.
func (r *run) detect(j *job, f *os.File, st *unix.Stat_t, sig string) {
	r.detections.Add(1)
	cfg := r.s.cfg
	ev := FileEvent{Path: j.path, ContainerPath: j.cpath, Signature: sig, Action: cfg.Action, ActionResult: report.ActionOK}
	if j.ctr != nil {
		ev.Container = j.ctr.ID
	}
	var err error
	switch cfg.Action {
	case report.ActionCopy, report.ActionMove:
		m := quarantine.Meta{
			Node: cfg.Node, Path: j.path, Container: ev.Container, ContainerPath: j.cpath,
			UID: int(st.Uid), GID: int(st.Gid), Mode: quarantine.ModeString(st.Mode),
			MTime: time.Unix(st.Mtim.Unix()).UTC(), Signature: sig, Action: cfg.Action, ScanID: r.opts.ScanID,
		}
		if j.ctr != nil {
			root := j.ctr.Root
			m.ContainerPID, m.ContainerRoot = j.ctr.PID, &root
		}
		m, err = r.s.quar.Put(f, m)
		if err == nil {
			ev.QuarantineID = m.ID
			if cfg.Action == report.ActionMove {
				if rerr := removeOriginal(j.dir.fd, j.name, st); rerr != nil {
					err = fmt.Errorf("copied to quarantine as %s, but the original stays: %w", m.ID, rerr)
				}
			}
		}
	case report.ActionRemove:
		err = removeOriginal(j.dir.fd, j.name, st)
	}
	if err != nil {
		ev.ActionResult, ev.ActionError = report.ActionFailed, err.Error()
		r.s.cfg.Logger.Error("action on infected file failed", "path", j.path, "action", cfg.Action, "err", err)
	}
	det := report.Detection{
		Time: time.Now().UTC(), ScanID: r.opts.ScanID, Node: cfg.Node, Container: ev.Container,
		Path: j.path, ContainerPath: j.cpath, Signature: sig, Action: cfg.Action,
		ActionResult: ev.ActionResult, ActionError: ev.ActionError, QuarantineID: ev.QuarantineID,
		DBVersions: r.opts.DBVersions,
	}
	r.evMu.Lock()
	defer r.evMu.Unlock()
	if r.opts.OnFile != nil {
		r.opts.OnFile(ev)
	}
	if cfg.Sink != nil {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.ctx), 30*time.Second)
		cfg.Sink.Report(ctx, det)
		cancel()
	}
}

// removeOriginal unlinks name in dir if it still is the file that was
// scanned (same device and inode): a name reused since is left alone.
func removeOriginal(dir int, name string, st *unix.Stat_t) error {
	var now unix.Stat_t
	if err := unix.Fstatat(dir, name, &now, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("remove: %w", err)
	}
	if now.Dev != st.Dev || now.Ino != st.Ino {
		return errors.New("remove: the name now points to another file; not removed")
	}
	if err := unix.Unlinkat(dir, name, 0); err != nil {
		return fmt.Errorf("remove: %w", err)
	}
	return nil
}
