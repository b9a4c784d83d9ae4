//go:build !unix

package mirror

import (
	"context"
	"errors"
)

type fileLock struct{}

func acquireFileLock(ctx context.Context, path string) (*fileLock, error) {
	return nil, errors.New("the mirror store needs flock: run the mirror on Linux or another Unix")
}

func (l *fileLock) release() {}
