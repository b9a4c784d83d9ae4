package schedule

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"time"

	"github.com/avfleet/avfleet/internal/fsutil"
)

// State keeps the start time of the last completed scheduled run across
// agent restarts, so that a missed run can be made up.
type State interface {
	LastRun() (time.Time, error) // zero time: never ran
	SetLastRun(time.Time) error
}

// FileState is a State in a small JSON file (state_dir/schedule.json),
// replaced atomically on every write.
type FileState struct{ Path string }

type stateFile struct {
	LastRun time.Time `json:"last_run"`
}

func (f FileState) LastRun() (time.Time, error) {
	b, err := os.ReadFile(f.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("read schedule state: %w", err)
	}
	var s stateFile
	if err := json.Unmarshal(b, &s); err != nil {
		return time.Time{}, fmt.Errorf("read schedule state %s: %w (delete it to start afresh)", f.Path, err)
	}
	return s.LastRun, nil
}

func (f FileState) SetLastRun(t time.Time) error {
	b, _ := json.Marshal(stateFile{LastRun: t.UTC()})
	if err := fsutil.WriteFile(f.Path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("schedule state: %w", err)
	}
	return nil
}

// MemState is a State that forgets on restart (tests, one-shot runs).
type MemState struct {
	mu sync.Mutex
	t  time.Time
}

func (m *MemState) LastRun() (time.Time, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.t, nil
}

func (m *MemState) SetLastRun(t time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.t = t
	return nil
}
