//go:build !unix

package updater

import (
	"context"
	"errors"
)

type fileLock struct{}

func lockFile(context.Context, string) (*fileLock, error) {
	return nil, errors.New("the avfleet agent runs on Linux and other unix systems only")
}

func (l *fileLock) unlock() {}
