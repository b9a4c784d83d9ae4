package scan

import (
	"context"
	"errors"
	"os"

	"github.com/avfleet/avfleet/internal/clamd"
)

// ClamdEngine scans through clamd at c's address. Over a unix socket each
// worker keeps one IDSESSION and passes descriptors (FILDES): clamd reads
// the file the scanner opened, whatever its permissions or mount namespace.
// Over TCP each file is streamed (INSTREAM) on its own connection, because
// clamd ends a whole session when a stream passes its StreamMaxLength.
func ClamdEngine(c *clamd.Client) Engine { return clamdEngine{c} }

type clamdEngine struct{ c *clamd.Client }

func (e clamdEngine) Open(ctx context.Context) (Conn, error) {
	if e.c.Addr.Network != "unix" {
		// Check now that clamd answers, so that an unreachable clamd fails
		// the scan instead of every file.
		if err := e.c.Ping(ctx); err != nil {
			return nil, err
		}
		return streamConn{e.c}, nil
	}
	s, err := e.c.Session(ctx)
	if err != nil {
		return nil, err
	}
	return sessionConn{s}, nil
}

type sessionConn struct{ s *clamd.Session }

func (c sessionConn) Scan(ctx context.Context, f *os.File) (Verdict, error) {
	res, err := c.s.ScanFD(ctx, f)
	return verdict(res, err)
}

func (c sessionConn) Close() error { return c.s.Close() }

type streamConn struct{ c *clamd.Client }

func (c streamConn) Scan(ctx context.Context, f *os.File) (Verdict, error) {
	res, err := c.c.ScanFile(ctx, f)
	return verdict(res, err)
}

func (streamConn) Close() error { return nil }

// verdict separates what clamd said about the file from a failed connection.
func verdict(res clamd.Result, err error) (Verdict, error) {
	var re *clamd.ReplyError
	switch {
	case errors.Is(err, clamd.ErrSizeLimit):
		return Verdict{Limit: "larger than clamd's StreamMaxLength"}, nil
	case errors.As(err, &re) && errors.Is(err, clamd.ErrClamdError):
		return Verdict{Error: re.Reply}, nil
	case err != nil:
		return Verdict{}, err
	}
	switch res.Status {
	case clamd.StatusFound:
		return Verdict{Signature: res.Signature}, nil
	case clamd.StatusError:
		return Verdict{Error: res.Err}, nil
	}
	return Verdict{}, nil
}
