//go:build !unix

package clamd

import (
	"errors"
	"net"
	"os"
)

func sendFD(net.Conn, *os.File) error {
	return errors.New("descriptor passing (FILDES) is not supported on this platform; use INSTREAM")
}
