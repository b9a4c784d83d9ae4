package clamd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"strings"
	"time"
)

// MaxReplyBytes bounds one NUL-terminated reply, so a misbehaving server
// cannot make the client buffer without limit. STATS with a long queue is the
// largest legitimate reply and stays far below it.
const MaxReplyBytes = 1 << 20

// errReadTimedOut is clamd closing a connection on which nothing came for
// its ReadTimeout (an idle session) or CommandReadTimeout (no command).
var errReadTimedOut = errors.New(`clamd sent "COMMAND READ TIMED OUT" and closed the connection (idle longer than its ReadTimeout)`)

// DefaultChunkSize is the INSTREAM chunk size when Client.ChunkSize is 0.
const DefaultChunkSize = 64 << 10

// Client talks to one clamd. Every call opens its own connection and closes
// it when done, so a Client is safe for concurrent use: N goroutines scanning
// with ScanFile keep N scans in flight. Over a unix socket a connection costs
// a few microseconds; for many small scans over TCP a Session saves the
// handshakes.
type Client struct {
	Addr Addr
	// ChunkSize is the INSTREAM chunk size; 0 means DefaultChunkSize.
	ChunkSize int
}

// NewClient returns a Client for addr (unix:///path or tcp://host:port).
func NewClient(addr string) (*Client, error) {
	a, err := ParseAddr(addr)
	if err != nil {
		return nil, err
	}
	return &Client{Addr: a}, nil
}

// Ping sends PING and expects PONG.
func (c *Client) Ping(ctx context.Context) error {
	reply, err := c.simple(ctx, "PING")
	if err != nil {
		return err
	}
	if reply != "PONG" {
		return &ReplyError{Command: "PING", Reply: reply, Err: ErrProtocol, Addr: c.Addr.String()}
	}
	return nil
}

// Version sends VERSION.
func (c *Client) Version(ctx context.Context) (Version, error) {
	reply, err := c.simple(ctx, "VERSION")
	if err != nil {
		return Version{}, err
	}
	return ParseVersion(reply)
}

// Stats sends STATS.
func (c *Client) Stats(ctx context.Context) (Stats, error) {
	reply, err := c.simple(ctx, "STATS")
	if err != nil {
		return Stats{}, err
	}
	return ParseStats(reply)
}

// Reload sends RELOAD. clamd answers RELOADING at once and loads the
// databases afterwards, in the background: a nil error says only that the
// reload was requested, not that it worked. clamd reports the outcome in its
// log alone (see package clamdproc for a managed clamd).
func (c *Client) Reload(ctx context.Context) error {
	reply, err := c.simple(ctx, "RELOAD")
	if err != nil {
		return err
	}
	if reply != "RELOADING" {
		return &ReplyError{Command: "RELOAD", Reply: reply, Err: ErrProtocol, Addr: c.Addr.String()}
	}
	return nil
}

// Scan sends SCAN path: clamd opens the path itself (it must be able to
// read it) and, for a directory, stops at the first match.
func (c *Client) Scan(ctx context.Context, path string) ([]Result, error) {
	return c.pathScan(ctx, "SCAN", path)
}

// ContScan sends CONTSCAN path: like Scan, but a directory is scanned to the
// end and every match is reported.
func (c *Client) ContScan(ctx context.Context, path string) ([]Result, error) {
	return c.pathScan(ctx, "CONTSCAN", path)
}

// MultiScan sends MULTISCAN path: like ContScan, with clamd scanning the
// directory's files in parallel on its own threads.
func (c *Client) MultiScan(ctx context.Context, path string) ([]Result, error) {
	return c.pathScan(ctx, "MULTISCAN", path)
}

func (c *Client) pathScan(ctx context.Context, cmd, path string) ([]Result, error) {
	if strings.ContainsAny(path, "\x00") || path == "" {
		return nil, fmt.Errorf("clamd %s: invalid path %q", cmd, path)
	}
	var out []Result
	err := c.do(ctx, cmd, func(cn *conn) error {
		if err := cn.writeCommand(cmd + " " + path); err != nil {
			return err
		}
		for {
			line, err := cn.readReply()
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
			r, err := ParseResult(cmd, line, path)
			if err != nil {
				return err
			}
			out = append(out, r)
		}
		if len(out) == 0 {
			return &ReplyError{Command: cmd, Err: ErrNoReply}
		}
		return nil
	})
	return out, err
}

// ScanFD sends FILDES with f's descriptor (unix sockets only): clamd scans
// the open file itself, so it needs no access to the path, and the path may
// be in another mount namespace (/proc/PID/root/...). The caller keeps
// ownership of f.
func (c *Client) ScanFD(ctx context.Context, f *os.File) (Result, error) {
	if c.Addr.Network != "unix" {
		return Result{}, fmt.Errorf("clamd FILDES %s: descriptor passing needs a unix socket (use ScanStream or ScanFile over TCP)", c.Addr)
	}
	var out Result
	err := c.do(ctx, "FILDES", func(cn *conn) error {
		if err := cn.writeCommand("FILDES"); err != nil {
			return err
		}
		if err := sendFD(cn.c, f); err != nil {
			return fmt.Errorf("send descriptor of %s: %w", f.Name(), err)
		}
		lines, err := cn.readOneObject()
		if err != nil {
			return err
		}
		out, err = mergeResults("FILDES", lines, f.Name())
		return err
	})
	return out, err
}

// ScanStream sends r's content with INSTREAM. When the data passes clamd's
// StreamMaxLength, clamd stops reading and the error wraps ErrSizeLimit.
// Result.Path is "stream".
func (c *Client) ScanStream(ctx context.Context, r io.Reader) (Result, error) {
	var out Result
	err := c.do(ctx, "INSTREAM", func(cn *conn) error {
		lines, err := cn.instream(r, c.chunkSize())
		if err != nil {
			return err
		}
		out, err = mergeResults("INSTREAM", lines, "")
		return err
	})
	return out, err
}

// ScanFile scans an open file the cheapest way the address allows: FILDES
// over a unix socket, INSTREAM (reading f from offset 0) over TCP.
// Result.Path is f.Name().
func (c *Client) ScanFile(ctx context.Context, f *os.File) (Result, error) {
	return scanFile(ctx, c, c.Addr, f)
}

// fileScanner is what Client and Session share for ScanFile.
type fileScanner interface {
	ScanFD(ctx context.Context, f *os.File) (Result, error)
	ScanStream(ctx context.Context, r io.Reader) (Result, error)
}

func scanFile(ctx context.Context, s fileScanner, addr Addr, f *os.File) (Result, error) {
	if addr.Network == "unix" {
		return s.ScanFD(ctx, f)
	}
	r, err := s.ScanStream(ctx, io.NewSectionReader(f, 0, math.MaxInt64))
	if err == nil {
		r.Path = f.Name()
	}
	return r, err
}

func (c *Client) chunkSize() int {
	if c.ChunkSize > 0 {
		return c.ChunkSize
	}
	return DefaultChunkSize
}

// simple runs a command with a single reply and maps clamd's error replies.
func (c *Client) simple(ctx context.Context, cmd string) (string, error) {
	var reply string
	err := c.do(ctx, cmd, func(cn *conn) error {
		if err := cn.writeCommand(cmd); err != nil {
			return err
		}
		var err error
		reply, err = cn.readReply()
		if err == io.EOF {
			return &ReplyError{Command: cmd, Err: ErrNoReply}
		}
		if err != nil {
			return err
		}
		return replyError(cmd, reply)
	})
	return reply, err
}

// do dials, runs fn under ctx, and closes. It turns I/O errors caused by ctx
// into ctx's error so callers can tell a timeout from a broken clamd.
func (c *Client) do(ctx context.Context, cmd string, fn func(*conn) error) error {
	cn, err := dial(ctx, c.Addr)
	if err != nil {
		return fmt.Errorf("clamd %s: %w", cmd, err)
	}
	stop := cn.watch(ctx)
	err = fn(cn)
	stop()
	cn.c.Close()
	return wrapErr(ctx, cmd, c.Addr, err)
}

func wrapErr(ctx context.Context, cmd string, a Addr, err error) error {
	if err == nil {
		return nil
	}
	var re *ReplyError
	if errors.As(err, &re) {
		return withAddr(err, a)
	}
	// The connection's deadline is ctx's, and may fire a moment before ctx
	// itself reports it.
	dl, hasDeadline := ctx.Deadline()
	if ctx.Err() != nil || (hasDeadline && time.Until(dl) < 50*time.Millisecond && errors.Is(err, os.ErrDeadlineExceeded)) {
		<-ctx.Done()
		return fmt.Errorf("clamd %s %s: %w", cmd, a, context.Cause(ctx))
	}
	return fmt.Errorf("clamd %s %s: %w", cmd, a, err)
}

// conn is one connection speaking the z (NUL-terminated) protocol.
type conn struct {
	c net.Conn
	r *bufio.Reader
}

func dial(ctx context.Context, a Addr) (*conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, a.Network, a.Address)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", a, err)
	}
	return &conn{c: c, r: bufio.NewReaderSize(c, 4096)}, nil
}

// watch applies ctx's deadline to the connection and, when ctx is cancelled,
// sets a deadline in the past so blocked reads and writes return at once.
func (cn *conn) watch(ctx context.Context) (stop func()) {
	if dl, ok := ctx.Deadline(); ok {
		cn.c.SetDeadline(dl)
	}
	s := context.AfterFunc(ctx, func() { cn.c.SetDeadline(time.Unix(1, 0)) })
	return func() { s() }
}

func (cn *conn) writeCommand(cmd string) error {
	_, err := cn.c.Write([]byte("z" + cmd + "\x00"))
	return err
}

// readReply reads one NUL-terminated reply. io.EOF means the server closed
// the connection cleanly before a new reply started.
func (cn *conn) readReply() (string, error) {
	var buf []byte
	for {
		chunk, err := cn.r.ReadSlice(0)
		buf = append(buf, chunk...)
		if len(buf) > MaxReplyBytes {
			return "", fmt.Errorf("reply longer than %d bytes", MaxReplyBytes)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			if len(buf) == 0 {
				return "", io.EOF
			}
			if bytes.HasPrefix(buf, []byte("COMMAND READ TIMED OUT")) {
				// clamd's goodbye, newline-terminated even in z mode.
				return "", errReadTimedOut
			}
			return "", fmt.Errorf("reply %q: %w", truncate(string(buf)), io.ErrUnexpectedEOF)
		}
		if err != nil {
			return "", err
		}
		return string(bytes.TrimSuffix(buf, []byte{0})), nil
	}
}

// readAll reads replies until clamd closes the connection.
func (cn *conn) readAll() ([]string, error) {
	var out []string
	for {
		l, err := cn.readReply()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, l)
	}
}

// readOneObject reads the replies about a single object (FILDES, INSTREAM).
// clamd may reset the connection after its answer, for example when it
// stopped reading a stream at StreamMaxLength with data still unread, so an
// error after at least one reply does not hide the reply.
func (cn *conn) readOneObject() ([]string, error) {
	lines, err := cn.readAll()
	if len(lines) > 0 {
		return lines, nil
	}
	return nil, err
}

// instream sends INSTREAM and r's content in chunks. clamd answers early (and
// closes) when the size limit is passed, so replies are read concurrently:
// the writer stops at the first reply instead of writing into a closed socket
// and losing the answer to a connection reset.
func (cn *conn) instream(r io.Reader, chunk int) ([]string, error) {
	if err := cn.writeCommand("INSTREAM"); err != nil {
		return nil, err
	}
	type res struct {
		lines []string
		err   error
	}
	done := make(chan res, 1)
	go func() {
		lines, err := cn.readOneObject()
		done <- res{lines, err}
	}()
	buf := make([]byte, 4+chunk)
	var werr error
	for werr == nil {
		select {
		case rs := <-done: // clamd answered before the end of the stream
			return rs.lines, rs.err
		default:
		}
		n, rerr := io.ReadFull(r, buf[4:])
		if n > 0 {
			binary.BigEndian.PutUint32(buf[:4], uint32(n))
			_, werr = cn.c.Write(buf[:4+n])
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			cn.c.Close() // unblocks the reader
			<-done
			return nil, fmt.Errorf("read data to stream: %w", rerr)
		}
	}
	if werr == nil {
		_, werr = cn.c.Write([]byte{0, 0, 0, 0})
	}
	if werr != nil {
		// clamd may still have sent its reason (size limit) before closing;
		// give it a moment rather than waiting for ctx, which may have no deadline.
		cn.c.SetReadDeadline(time.Now().Add(2 * time.Second))
	}
	rs := <-done
	if werr != nil && len(rs.lines) == 0 {
		return nil, fmt.Errorf("send stream: %w", werr)
	}
	return rs.lines, rs.err
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
