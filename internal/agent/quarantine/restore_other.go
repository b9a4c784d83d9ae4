//go:build !linux

package quarantine

import "errors"

// Restore needs Linux (openat without following links, RENAME_NOREPLACE).
func (s *Store) Restore(id string) (string, error) {
	return "", errors.New("quarantine restore is supported on Linux only")
}
