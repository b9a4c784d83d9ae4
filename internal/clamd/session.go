package clamd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ErrSessionClosed is returned by Session calls once the session has ended:
// Close was called, clamd closed it (idle for its ReadTimeout, shutdown or
// restart, an INSTREAM over StreamMaxLength), or a write failed. Open a new
// session to go on.
var ErrSessionClosed = errors.New("clamd session closed")

// sessionCloseGrace is how long Close waits for replies still in flight.
const sessionCloseGrace = 5 * time.Second

// Session is one connection in clamd's IDSESSION mode: commands are
// pipelined on it, clamd runs them on its thread pool and answers each as
// "<id>: <reply>", in whatever order they finish. A Session is safe for
// concurrent use; each call waits for its own reply, so K goroutines sharing
// one session keep K scans in flight over a single connection.
//
// A session offers PING, FILDES and INSTREAM only. clamd refuses other
// commands inside a session by ending it, and drops the replies still owed
// on it. VERSION and STATS are accepted by clamd but unsafe here: clamd 1.4.6
// writes their "<id>: " prefix and their text in two writes, so a scan reply
// finishing meanwhile lands between them and the stream can no longer be
// parsed (seen in tests); use Client.Version and Client.Stats instead. clamd
// also ends a session that sent nothing for its ReadTimeout (120 s by
// default), saying "COMMAND READ TIMED OUT"; Ping keeps a quiet one open.
type Session struct {
	addr  Addr
	c     net.Conn
	r     *bufio.Reader
	chunk int

	wmu    sync.Mutex // serialises writes, and with them the ids clamd assigns
	nextID int

	mu      sync.Mutex
	pending map[int]chan sessionReply
	err     error // why the session ended; nil while it is usable

	done chan struct{} // closed when the reader has stopped
}

type sessionReply struct {
	line string
	err  error
}

// Session opens an IDSESSION connection. ctx bounds only the opening; each
// call takes its own context.
func (c *Client) Session(ctx context.Context) (*Session, error) {
	cn, err := dial(ctx, c.Addr)
	if err != nil {
		return nil, fmt.Errorf("clamd IDSESSION: %w", err)
	}
	stop := cn.watch(ctx)
	err = cn.writeCommand("IDSESSION")
	stop()
	if err != nil {
		cn.c.Close()
		return nil, wrapErr(ctx, "IDSESSION", c.Addr, err)
	}
	cn.c.SetDeadline(time.Time{})
	s := &Session{
		addr:    c.Addr,
		c:       cn.c,
		r:       cn.r,
		chunk:   c.chunkSize(),
		pending: make(map[int]chan sessionReply),
		done:    make(chan struct{}),
	}
	go s.readLoop()
	return s, nil
}

// Ping sends PING on the session; it also keeps an idle session open.
func (s *Session) Ping(ctx context.Context) error {
	reply, err := s.call(ctx, "PING", func() error { return s.writeCommand("PING") })
	if err != nil {
		return err
	}
	if reply != "PONG" {
		return &ReplyError{Command: "PING", Reply: reply, Err: ErrProtocol, Addr: s.addr.String()}
	}
	return nil
}

// ScanFD passes f's descriptor with FILDES (unix sockets only); see
// Client.ScanFD. With AllMatchScan, only the first match is reported.
func (s *Session) ScanFD(ctx context.Context, f *os.File) (Result, error) {
	if s.addr.Network != "unix" {
		return Result{}, fmt.Errorf("clamd FILDES %s: descriptor passing needs a unix socket", s.addr)
	}
	reply, err := s.call(ctx, "FILDES", func() error {
		if err := s.writeCommand("FILDES"); err != nil {
			return err
		}
		return sendFD(s.c, f)
	})
	if err != nil {
		return Result{}, err
	}
	r, err := mergeResults("FILDES", []string{reply}, f.Name())
	return r, withAddr(err, s.addr)
}

// ScanStream sends r's content with INSTREAM on the session. Other calls wait
// while the data is written. Past StreamMaxLength clamd closes the whole
// session without a reply, so this call (and any other in flight) gets
// ErrSessionClosed; use Client.ScanStream when sizes may pass the limit.
func (s *Session) ScanStream(ctx context.Context, r io.Reader) (Result, error) {
	reply, err := s.call(ctx, "INSTREAM", func() error {
		if err := s.writeCommand("INSTREAM"); err != nil {
			return err
		}
		return writeChunks(s.c, r, s.chunk)
	})
	if err != nil {
		return Result{}, err
	}
	res, err := mergeResults("INSTREAM", []string{reply}, "")
	return res, withAddr(err, s.addr)
}

// ScanFile is FILDES over a unix socket, INSTREAM over TCP; see Client.ScanFile.
func (s *Session) ScanFile(ctx context.Context, f *os.File) (Result, error) {
	return scanFile(ctx, s, s.addr, f)
}

// Close sends END, waits briefly for replies still owed, and closes the
// connection. Calls still waiting get their reply or ErrSessionClosed.
func (s *Session) Close() error {
	s.wmu.Lock()
	if s.sessionErr() == nil {
		s.c.SetWriteDeadline(time.Now().Add(sessionCloseGrace))
		s.writeCommand("END") // on failure the reader sees the broken connection
	}
	s.wmu.Unlock()
	select {
	case <-s.done: // clamd closed the connection after the last reply
	case <-time.After(sessionCloseGrace):
	}
	s.fail(ErrSessionClosed)
	<-s.done
	return nil
}

func (s *Session) writeCommand(cmd string) error {
	_, err := s.c.Write([]byte("z" + cmd + "\x00"))
	return err
}

func (s *Session) sessionErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// call writes one command (write runs with the connection to itself) and
// waits for the reply with its id. A failed or interrupted write leaves
// clamd's view of the ids unknown, so it ends the session.
func (s *Session) call(ctx context.Context, cmd string, write func() error) (string, error) {
	ch := make(chan sessionReply, 1)
	s.wmu.Lock()
	if err := s.sessionErr(); err != nil {
		s.wmu.Unlock()
		return "", fmt.Errorf("clamd %s %s: %w", cmd, s.addr, err)
	}
	s.nextID++
	id := s.nextID
	s.mu.Lock()
	s.pending[id] = ch
	s.mu.Unlock()

	dl, _ := ctx.Deadline() // zero: no deadline
	s.c.SetWriteDeadline(dl)
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		s.c.SetWriteDeadline(time.Unix(1, 0))
		close(fired)
	})
	werr := write()
	if !stop() {
		<-fired // the deadline must not land on the next caller's write
	}
	s.wmu.Unlock()
	if werr != nil {
		if ctx.Err() != nil {
			werr = context.Cause(ctx)
		}
		s.fail(fmt.Errorf("%w: write %s: %v", ErrSessionClosed, cmd, werr))
		if ctx.Err() != nil {
			return "", fmt.Errorf("clamd %s %s: %w (the session is closed)", cmd, s.addr, werr)
		}
		return "", fmt.Errorf("clamd %s %s: write: %v: %w", cmd, s.addr, werr, s.sessionErr())
	}

	select {
	case r := <-ch:
		if r.err != nil {
			return "", fmt.Errorf("clamd %s %s: %w", cmd, s.addr, r.err)
		}
		if err := replyErrorNoPath(cmd, r.line); err != nil {
			return "", withAddr(err, s.addr)
		}
		return r.line, nil
	case <-ctx.Done():
		// clamd will still answer; the reader drops a reply nobody waits for.
		s.mu.Lock()
		delete(s.pending, id)
		s.mu.Unlock()
		return "", fmt.Errorf("clamd %s %s: %w", cmd, s.addr, context.Cause(ctx))
	}
}

func (s *Session) readLoop() {
	defer close(s.done)
	for {
		line, err := (&conn{c: s.c, r: s.r}).readReply()
		if err != nil {
			if err == io.EOF {
				s.fail(ErrSessionClosed)
			} else {
				s.fail(fmt.Errorf("%w: %v", ErrSessionClosed, err))
			}
			return
		}
		idText, rest, ok := strings.Cut(line, ": ")
		id, err := strconv.Atoi(idText)
		if !ok || err != nil || id <= 0 {
			s.fail(fmt.Errorf("%w: %w", ErrSessionClosed, &ReplyError{Command: "IDSESSION", Reply: line, Err: ErrProtocol, Addr: s.addr.String()}))
			return
		}
		s.mu.Lock()
		ch := s.pending[id]
		delete(s.pending, id)
		s.mu.Unlock()
		if ch != nil {
			ch <- sessionReply{line: rest}
		}
	}
}

// fail ends the session with err (the first reason wins) and wakes every
// waiting call.
func (s *Session) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	err = s.err
	p := s.pending
	s.pending = make(map[int]chan sessionReply)
	s.mu.Unlock()
	s.c.Close()
	for _, ch := range p {
		ch <- sessionReply{err: err}
	}
}

// writeChunks writes r as INSTREAM chunks and the zero-length terminator.
func writeChunks(w io.Writer, r io.Reader, chunk int) error {
	buf := make([]byte, 4+chunk)
	for {
		n, rerr := io.ReadFull(r, buf[4:])
		if n > 0 {
			buf[0], buf[1], buf[2], buf[3] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
			if _, err := w.Write(buf[:4+n]); err != nil {
				return err
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("read data to stream: %w", rerr)
		}
	}
	_, err := w.Write([]byte{0, 0, 0, 0})
	return err
}
