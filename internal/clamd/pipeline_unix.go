//go:build unix

package clamd

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// pipelinePoll is how often a Recv or SendFD blocked on clamd looks at its
// context.
const pipelinePoll = 250 * time.Millisecond

// pipeSock is a Pipeline's connected socket. Its waits return
// os.ErrDeadlineExceeded after at most the time they are given, so that the
// caller can look at its context.
type pipeSock interface {
	// sendmsg writes all of b, with oob on its first byte.
	sendmsg(ctx context.Context, b, oob []byte) error
	// read reads what is there, waiting up to wait for something.
	read(b []byte, wait time.Duration) (int, error)
	close() error
}

// Pipeline is one IDSESSION connection over a unix socket for FILDES, driven
// by a single goroutine: no reader goroutine, no timer per call. It exists
// for scanning many files, where Session's per-call machinery costs as much
// CPU as the scanner's other work: the caller sends up to N descriptors,
// then receives replies (in the order clamd finishes them, each with its
// id) and sends more. How it waits for clamd is the operating system's part
// (pipeSock): on Linux, outside the runtime's scheduler altogether. It is
// not safe for concurrent use.
type Pipeline struct {
	addr   Addr
	sock   pipeSock
	nextID int
	cmd    []byte // "zFILDES\x00"
	nul    [1]byte
	oob    []byte // one SCM_RIGHTS message, rewritten per descriptor
	buf    []byte // bytes read from clamd; [r:w] not parsed yet
	r, w   int
}

// Pipeline opens an IDSESSION connection for SendFD and Recv (unix sockets
// only). ctx bounds only the opening.
func (c *Client) Pipeline(ctx context.Context) (*Pipeline, error) {
	if c.Addr.Network != "unix" {
		return nil, fmt.Errorf("clamd FILDES %s: descriptor passing needs a unix socket", c.Addr)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("clamd IDSESSION %s: %w", c.Addr, context.Cause(ctx))
	}
	sock, err := dialPipeSock(ctx, c.Addr.Address)
	if err != nil {
		return nil, fmt.Errorf("clamd IDSESSION: connect to %s: %w", c.Addr, err)
	}
	p := &Pipeline{
		addr: c.Addr, sock: sock,
		cmd: []byte("zFILDES\x00"),
		oob: unix.UnixRights(0),
		buf: make([]byte, 4096),
	}
	if err := p.sock.sendmsg(ctx, []byte("zIDSESSION\x00"), nil); err != nil {
		p.sock.close()
		return nil, fmt.Errorf("clamd IDSESSION %s: %w", c.Addr, err)
	}
	return p, nil
}

// SendFD sends FILDES with fd and returns the id clamd will answer under:
// the command, then one NUL byte carrying the descriptor, as clamdscan does
// (clamd 1.4 closes the connection when the descriptor comes with the
// command itself). The caller keeps fd open until the reply. ctx is looked
// at only while clamd is not reading. An error leaves the session unusable.
func (p *Pipeline) SendFD(ctx context.Context, fd int) (int, error) {
	if err := p.sock.sendmsg(ctx, p.cmd, nil); err != nil {
		return 0, fmt.Errorf("clamd FILDES %s: send command: %w", p.addr, err)
	}
	// The descriptor follows the header (the message is padded after it).
	binary.NativeEndian.PutUint32(p.oob[unix.CmsgLen(0):], uint32(fd))
	if err := p.sock.sendmsg(ctx, p.nul[:], p.oob); err != nil {
		return 0, fmt.Errorf("clamd FILDES %s: send descriptor: %w", p.addr, err)
	}
	p.nextID++
	return p.nextID, nil
}

// Recv waits for the next reply and returns its id and text (without the
// "<id>: " prefix). A reply that is clamd refusing the command (rather than
// a result about the file) comes back as a *ReplyError. ctx is looked at
// at least every quarter second while waiting.
func (p *Pipeline) Recv(ctx context.Context) (int, string, error) {
	for {
		if i := bytes.IndexByte(p.buf[p.r:p.w], 0); i >= 0 {
			line := p.buf[p.r : p.r+i]
			p.r += i + 1
			return p.parse(line)
		}
		if p.r > 0 { // keep the unparsed tail at the start
			p.w = copy(p.buf, p.buf[p.r:p.w])
			p.r = 0
		}
		if p.w == len(p.buf) {
			if len(p.buf) >= MaxReplyBytes {
				return 0, "", fmt.Errorf("clamd IDSESSION %s: reply longer than %d bytes", p.addr, MaxReplyBytes)
			}
			p.buf = append(p.buf, make([]byte, len(p.buf))...)
		}
		if ctx.Err() != nil {
			return 0, "", fmt.Errorf("clamd FILDES %s: %w", p.addr, context.Cause(ctx))
		}
		n, err := p.sock.read(p.buf[p.w:], pipelinePoll)
		switch {
		case n > 0:
			p.w += n
		case errors.Is(err, os.ErrDeadlineExceeded):
			// look at ctx again
		case err == nil || errors.Is(err, io.EOF):
			if bytes.HasPrefix(p.buf[p.r:p.w], []byte("COMMAND READ TIMED OUT")) {
				return 0, "", fmt.Errorf("clamd FILDES %s: %w: %w", p.addr, ErrSessionClosed, errReadTimedOut)
			}
			return 0, "", fmt.Errorf("clamd FILDES %s: %w", p.addr, ErrSessionClosed)
		default:
			return 0, "", fmt.Errorf("clamd FILDES %s: %w: %v", p.addr, ErrSessionClosed, err)
		}
	}
}

func (p *Pipeline) parse(line []byte) (int, string, error) {
	idText, rest, ok := bytes.Cut(line, []byte(": "))
	id, err := strconv.Atoi(string(idText))
	if !ok || err != nil || id <= 0 {
		return 0, "", fmt.Errorf("%w: %w", ErrSessionClosed, &ReplyError{Command: "IDSESSION", Reply: string(line), Err: ErrProtocol, Addr: p.addr.String()})
	}
	reply := string(rest)
	if err := replyErrorNoPath("FILDES", reply); err != nil {
		return id, reply, withAddr(err, p.addr)
	}
	return id, reply, nil
}

// FildesResult parses a FILDES reply from Recv; name becomes Result.Path.
func (p *Pipeline) FildesResult(reply, name string) (Result, error) {
	r, err := mergeResults("FILDES", []string{reply}, name)
	return r, withAddr(err, p.addr)
}

// Close ends the session without waiting for replies still owed.
func (p *Pipeline) Close() error {
	if p.sock == nil {
		return nil
	}
	err := p.sock.close()
	p.sock = nil
	if err != nil {
		return fmt.Errorf("clamd IDSESSION %s: close: %w", p.addr, err)
	}
	return nil
}
