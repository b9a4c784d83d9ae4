// Package scan walks host paths and every container root on the host and
// hands each regular file to clamd by descriptor. It owns the walk (openat
// style, never following a symlink, skipping FIFOs, sockets and devices
// without blocking on them), the discovery of containers through /proc, the
// incremental cache of clean results, the action taken on a detection
// (through package quarantine), and the per-scan counts. It reports through
// a Sink (report.Reporter in the agent) and a progress callback; it draws
// nothing.
//
// The agent daemon uses it like this (cmd/avfleet's scan command the same way):
//
//	sc, err := scan.FromAgent(cfg, scan.ClamdEngine(clamdClient), reporter, logger, nil) // or scan.New(scan.Config{...})
//	if err != nil { ... }
//	defer sc.Close()
//	key, versions, loaded, err := scan.DefinitionsKey(dbDir, clamdVersion.Raw)
//	sum, err := sc.Run(ctx, scan.Options{
//		Trigger:     report.TriggerSchedule,   // or report.TriggerOnDemand
//		Paths:       cfg.Scan.Paths,
//		Containers:  cfg.Scan.Containers,
//		Definitions: key,                      // "" (e.g. !loaded) turns incremental off for this run
//		DBVersions:  versions,                 // for the report events
//		Progress:    func(p scan.Progress) {}, // optional, called every ProgressEvery
//	})
//
// The daemon's scheduled scans are wired in cmd/avfleet (cmd_scan.go,
// registered as an agent Part): a schedule.Runner whose job is Run.
//
// Run blocks until the scan ends. It returns the summary (always filled in,
// also reported to the Sink) and a non-nil error only when the scan could not
// run to its end (clamd unreachable, ctx cancelled): then Summary.Result is
// "error" or "cancelled". Files that vanish, cannot be read or exceed clamd's
// limits do not fail a scan; they are counted in Summary.SkippedByReason.
// A Scanner runs one scan at a time (Run returns ErrBusy otherwise); the
// daemon's schedule.Runner already guarantees that.
//
// Workers (files in flight to clamd) should follow the agent's limits:
// scan.Concurrency(cfg.Clamd.MaxThreads, cfg.Limits.CPUPercent).
package scan
