//go:build !unix

package mirror

// RunAsDataDirOwner does nothing where there is no root to drop (the mirror
// store itself needs Unix).
func RunAsDataDirOwner(dataDir string) (uid int, fixed int, err error) { return -1, 0, nil }

func foreignOwner(dataDir string) int { return -1 }
