package scan

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	"github.com/avfleet/avfleet/internal/agent/quarantine"
	"github.com/avfleet/avfleet/internal/config"
	"github.com/avfleet/avfleet/internal/report"
)

// CacheFile is the incremental cache's name inside state_dir.
const CacheFile = "scan-cache.db"

// ErrBusy is returned by Run while another scan runs on the same Scanner.
var ErrBusy = errors.New("a scan is already running")

// Sink receives the detection and summary events (report.Reporter is one).
type Sink interface {
	Report(ctx context.Context, ev report.Event) error
}

// Config is what stays the same from scan to scan.
type Config struct {
	Node          string // "" = hostname
	Engine        Engine // required
	Workers       int    // files clamd scans at once (more wait in its queue); <= 0: Concurrency(0, 0)
	Exclude       []string
	OneFilesystem bool
	MaxFileSize   int64  // larger files are counted too_large, not sent; 0: DefaultMaxFileSize
	CachePath     string // incremental cache (SQLite); "" = every file is scanned every time
	Action        string // notify (default) | copy | move | remove
	QuarantineDir string // where copy and move put files; always excluded from scans
	Sink          Sink   // nil: events are only returned and passed to Options.OnFile
	Logger        *slog.Logger
	// Pacer, when set, is waited on before each file is opened for clamd:
	// limits.Group.Pacer, where no cgroup holds the scan to its CPU limit.
	Pacer Pacer
}

// Pacer holds a scan back to a CPU budget (limits.Pacer).
type Pacer interface {
	Wait(ctx context.Context) error
}

// Scanner scans; it is safe for use by several goroutines, one scan at a time.
type Scanner struct {
	cfg     Config
	exclude []*regexp.Regexp
	cache   *Cache
	quar    *quarantine.Store
	busy    sync.Mutex

	// beforeOpen, set by tests only, runs just before a worker opens a file:
	// it lets a test delete the file between the walk and the open.
	beforeOpen func(path string)
	clamdWait  time.Duration // tests shorten how long an unreachable clamd is retried
}

// New checks c and opens the cache and the quarantine it names.
func New(c Config) (*Scanner, error) {
	if c.Engine == nil {
		return nil, errors.New("scan: no clamd engine")
	}
	if c.Workers <= 0 {
		c.Workers = Concurrency(0, 0)
	}
	if c.MaxFileSize <= 0 {
		c.MaxFileSize = DefaultMaxFileSize
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Node == "" {
		c.Node, _ = os.Hostname()
	}
	s := &Scanner{cfg: c}
	for _, e := range c.Exclude {
		re, err := regexp.Compile(e)
		if err != nil {
			return nil, fmt.Errorf("scan.exclude: %q: %w", e, err)
		}
		s.exclude = append(s.exclude, re)
	}
	switch c.Action {
	case "", report.ActionNotify, report.ActionRemove:
	case report.ActionCopy, report.ActionMove:
		q, err := quarantine.Open(c.QuarantineDir)
		if err != nil {
			return nil, err
		}
		s.quar = q
	default:
		return nil, fmt.Errorf("scan.action: %q is not notify, copy, move or remove", c.Action)
	}
	if s.cfg.Action == "" {
		s.cfg.Action = report.ActionNotify
	}
	if c.CachePath != "" {
		cache, err := OpenCache(c.CachePath)
		if err != nil {
			return nil, err
		}
		s.cache = cache
	}
	return s, nil
}

// FromAgent builds the Scanner agent.yaml describes.
func FromAgent(a *config.Agent, eng Engine, sink Sink, log *slog.Logger, pacer Pacer) (*Scanner, error) {
	cache := ""
	if a.Scan.Incremental {
		cache = filepath.Join(a.StateDir, CacheFile)
	}
	return New(Config{
		Node:          a.NodeName,
		Engine:        eng,
		Workers:       Concurrency(a.Clamd.MaxThreads, a.Limits.CPUPercent),
		Exclude:       a.Scan.Exclude,
		OneFilesystem: a.Scan.OneFilesystem,
		CachePath:     cache,
		Action:        a.Scan.Action,
		QuarantineDir: a.Scan.QuarantineDir,
		Sink:          sink,
		Logger:        log,
		Pacer:         pacer,
	})
}

// Close closes the incremental cache.
func (s *Scanner) Close() error {
	if s.cache != nil {
		return s.cache.Close()
	}
	return nil
}

// Workers is how many files a scan keeps in flight.
func (s *Scanner) Workers() int { return s.cfg.Workers }

// Options are one scan's.
type Options struct {
	ScanID     string // "" = a new one
	Trigger    string // report.TriggerSchedule | report.TriggerOnDemand
	Paths      []string
	Containers bool // also every container root found through /proc
	// Definitions names the definitions clamd has loaded (DefinitionsKey);
	// clean results are remembered under it and trusted only while it stays
	// the same. "" turns the incremental cache off for this scan.
	Definitions string
	DBVersions  map[string]uint
	// Count runs a quick counting walk beside the scan so that Progress
	// carries totals (for an ETA).
	Count         bool
	Progress      func(Progress) // called every ProgressEvery and once at the end
	ProgressEvery time.Duration  // 0: 250ms
	// OnFile is told about every detection and every file not scanned (with
	// its reason); calls are serialised.
	OnFile func(FileEvent)
}

// Progress is a snapshot of a running scan.
type Progress struct {
	Files      int64 // scanned by clamd
	Bytes      int64
	Unchanged  int64 // skipped: unchanged since a clean scan (incremental)
	Skipped    int64
	Errors     int64
	Detections int64
	Containers int64
	// DoneFiles and DoneBytes count every regular file dealt with (scanned,
	// unchanged or not scannable), comparable with the totals.
	DoneFiles, DoneBytes   int64
	TotalFiles, TotalBytes int64 // from the counting walk; -1 until it ends
	Elapsed                time.Duration
	Current                string
}

// FileEvent is one detection (Signature set) or one file not scanned
// (Reason set).
type FileEvent struct {
	Path          string // as the agent reads it (/proc/PID/root/... in a container)
	Container     string
	ContainerPath string
	Signature     string
	Reason        string // a Reason* constant
	Err           string // detail for Reason
	Action        string
	ActionResult  string
	ActionError   string
	QuarantineID  string
}

// Reasons a file or directory is not scanned; the keys of
// ScanSummary.SkippedByReason. The first group is policy (Skipped), the
// second could not be scanned (Skipped too), the last are Errors.
const (
	ReasonExcluded       = "excluded"
	ReasonSymlink        = "symlink"
	ReasonFIFO           = "fifo"
	ReasonSocket         = "socket"
	ReasonDevice         = "device"
	ReasonOtherFS        = "other_filesystem"
	ReasonPseudoFS       = "pseudo_filesystem"
	ReasonAlreadyScanned = "already_scanned"
	ReasonQuarantine     = "quarantine"
	ReasonContainerLayer = "container_layer"

	ReasonVanished   = "vanished"
	ReasonTooLarge   = "too_large"
	ReasonClamdLimit = "clamd_limit"

	ReasonUnreadable = "unreadable"
	ReasonMissing    = "missing"
	ReasonClamdError = "clamd_error"
)

// IsError reports whether reason counts as an error rather than a skip.
func IsError(reason string) bool {
	return reason == ReasonUnreadable || reason == ReasonMissing || reason == ReasonClamdError
}

// Run scans opts.Paths (and the containers) and returns the summary. See the
// package documentation for what its error means.
func (s *Scanner) Run(ctx context.Context, opts Options) (report.ScanSummary, error) {
	if !s.busy.TryLock() {
		return report.ScanSummary{}, ErrBusy
	}
	defer s.busy.Unlock()
	if opts.ScanID == "" {
		opts.ScanID = NewScanID(time.Now())
	}
	if opts.Trigger == "" {
		opts.Trigger = report.TriggerOnDemand
	}
	if opts.ProgressEvery <= 0 {
		opts.ProgressEvery = 250 * time.Millisecond
	}
	return s.run(ctx, opts)
}

// NewScanID makes a scan id: the start time and a random suffix.
func NewScanID(t time.Time) string {
	var b [4]byte
	rand.Read(b[:])
	return t.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}
