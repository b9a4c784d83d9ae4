package clamdtest

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// EICAR is the standard antivirus test file, built at run time so the
// source itself is not detected.
var EICAR = []byte(`X5O!P%@AP[4\PZX54(P^)7CC)7}$` + "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*")

// Request is one command the server received.
type Request struct {
	Command string // "PING", "SCAN", "FILDES", "INSTREAM", ...
	Arg     string // the path of SCAN, CONTSCAN, MULTISCAN
	Session bool   // sent inside IDSESSION
	ID      int    // its id inside the session
	Data    []byte // INSTREAM: the data received; FILDES: the content read through the descriptor
	FDPath  string // FILDES: what the received descriptor points to (from /proc/self/fd), if known
	FD      int    // FILDES: the descriptor number the server received, as clamd prints in fd[N]
}

// Response is how the server answers one request.
type Response struct {
	Replies []string      // sent in order, each NUL-terminated; in a session each gets "<id>: "
	Delay   time.Duration // wait before answering (a slow clamd)
	Hangup  bool          // close the connection instead of answering (a crashed clamd)
}

// Handler decides a Response for a Request.
type Handler func(Request) Response

// Server is a fake clamd. Its setters may be called at any time; they
// affect requests read afterwards.
type Server struct {
	Addr    string // unix:///path or tcp://127.0.0.1:port, for clamd.ParseAddr
	Network string // "unix" or "tcp"

	ln              net.Listener
	streamMaxLength int64
	version         string
	signatures      map[string]string
	mu              sync.Mutex
	reqs            []Request
	handlers        map[string]Handler
	disabled        map[string]bool
	conns           map[net.Conn]bool
	wg              sync.WaitGroup
	closed          bool
	stop            chan struct{} // closed by Close
}

// NewUnix starts a fake clamd on a unix socket in a short temp dir (socket
// paths are limited to 107 bytes) and closes it when the test ends.
func NewUnix(t testing.TB) *Server {
	t.Helper()
	dir, err := os.MkdirTemp("", "clamdtest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	p := filepath.Join(dir, "clamd.sock")
	ln, err := net.Listen("unix", p)
	if err != nil {
		t.Fatalf("clamdtest: listen on %s: %v", p, err)
	}
	return start(t, ln, "unix", "unix://"+p)
}

// NewTCP starts a fake clamd on a free loopback TCP port.
func NewTCP(t testing.TB) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("clamdtest: listen on loopback: %v", err)
	}
	return start(t, ln, "tcp", "tcp://"+ln.Addr().String())
}

func start(t testing.TB, ln net.Listener, network, addr string) *Server {
	s := &Server{
		Addr:       addr,
		Network:    network,
		version:    "ClamAV 1.4.6/27500/Tue Dec 10 09:32:02 2024",
		signatures: map[string]string{string(EICAR): "Eicar-Test-Signature"},
		ln:         ln,
		handlers:   map[string]Handler{},
		disabled:   map[string]bool{},
		conns:      map[net.Conn]bool{},
		stop:       make(chan struct{}),
	}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(s.Close)
	return s
}

// Handle replaces the answer to one command (e.g. "PING", "FILDES").
func (s *Server) Handle(cmd string, h Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handlers[cmd] = h
}

// SetStreamMaxLength makes INSTREAM fail like clamd past its limit when n >
// 0: "INSTREAM size limit exceeded. ERROR", then the connection closes
// (inside a session clamd closes it without that reply).
func (s *Server) SetStreamMaxLength(n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.streamMaxLength = n
}

// SetVersion sets the VERSION reply (default "ClamAV 1.4.6/27500/Tue Dec 10
// 09:32:02 2024").
func (s *Server) SetVersion(v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.version = v
}

// SetSignature makes the default scan answers report name for data that
// contains pattern. EICAR is "Eicar-Test-Signature" from the start.
func (s *Server) SetSignature(pattern, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.signatures[pattern] = name
}

// Disable makes cmd answer COMMAND UNAVAILABLE, as clamd does for a command
// turned off in clamd.conf (EnableReloadCommand no, ...).
func (s *Server) Disable(cmd string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.disabled[cmd] = true
}

// Requests returns the commands received so far, in arrival order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.reqs...)
}

// Commands returns just the command names received so far.
func (s *Server) Commands() []string {
	var out []string
	for _, r := range s.Requests() {
		out = append(out, r.Command)
	}
	return out
}

// Close stops the server, drops open connections and waits for its goroutines.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.stop)
	s.ln.Close()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = true
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.serve(c)
			c.Close()
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// connState is one client connection.
type connState struct {
	c   net.Conn
	fr  *fdReader
	r   *bufio.Reader
	wmu sync.Mutex
}

func (cs *connState) send(id int, reply string, term byte) error {
	cs.wmu.Lock()
	defer cs.wmu.Unlock()
	if id > 0 {
		reply = fmt.Sprintf("%d: %s", id, reply)
	}
	_, err := cs.c.Write(append([]byte(reply), term))
	return err
}

// readCommand reads "zCMD\0" or "nCMD\n".
func (cs *connState) readCommand() (string, byte, error) {
	p, err := cs.r.ReadByte()
	if err != nil {
		return "", 0, err
	}
	term := byte(0)
	switch p {
	case 'z':
	case 'n':
		term = '\n'
	default:
		return "", 0, fmt.Errorf("command without z or n prefix")
	}
	line, err := cs.r.ReadString(term)
	if err != nil {
		return "", 0, err
	}
	return strings.TrimSuffix(line, string(term)), term, nil
}

func (s *Server) serve(c net.Conn) {
	fr := &fdReader{c: c}
	cs := &connState{c: c, fr: fr, r: bufio.NewReader(fr)}
	defer fr.closeFDs()
	cmd, term, err := cs.readCommand()
	if err != nil {
		return
	}
	if cmd != "IDSESSION" {
		req, ok := s.readRequest(cs, cmd, term, false, 0)
		if ok {
			s.answer(cs, req, term)
		}
		return
	}
	// Session: read commands until END, answer each from its own goroutine
	// so that slow replies come back out of order, as clamd's do.
	var inflight sync.WaitGroup
	defer inflight.Wait()
	for id := 1; ; id++ {
		cmd, term, err := cs.readCommand()
		if err != nil {
			return
		}
		name, _, _ := strings.Cut(cmd, " ")
		switch name {
		case "END":
			return
		case "PING", "VERSION", "STATS", "FILDES", "INSTREAM", "SCAN", "CONTSCAN", "MULTISCAN", "ALLMATCHSCAN":
		default:
			s.record(Request{Command: name, Session: true, ID: id})
			cs.send(id, "Command invalid inside IDSESSION. ERROR", term)
			return
		}
		req, ok := s.readRequest(cs, cmd, term, true, id)
		if !ok {
			return
		}
		inflight.Add(1)
		go func() {
			defer inflight.Done()
			s.answer(cs, req, term)
		}()
	}
}

// readRequest reads what follows a command on the wire (a descriptor, the
// stream data) and records the request. ok is false when the connection is
// finished.
func (s *Server) readRequest(cs *connState, cmd string, term byte, session bool, id int) (Request, bool) {
	name, arg, _ := strings.Cut(cmd, " ")
	req := Request{Command: name, Arg: arg, Session: session, ID: id}
	switch name {
	case "FILDES":
		// The descriptor rides on one dummy byte sent with SCM_RIGHTS.
		if _, err := cs.r.ReadByte(); err != nil {
			return req, false
		}
		fd, ok := cs.fr.popFD()
		if !ok {
			s.record(req)
			cs.send(id, "No file descriptor received. ERROR", term)
			return req, false
		}
		req.FD = fd
		req.FDPath, req.Data = readFD(fd)
	case "INSTREAM":
		s.mu.Lock()
		limit := s.streamMaxLength
		s.mu.Unlock()
		var data bytes.Buffer
		for {
			var hdr [4]byte
			if _, err := io.ReadFull(cs.r, hdr[:]); err != nil {
				return req, false
			}
			n := int64(binary.BigEndian.Uint32(hdr[:]))
			if n == 0 {
				break
			}
			if limit > 0 && int64(data.Len())+n > limit {
				req.Data = data.Bytes()
				s.record(req)
				if !session { // clamd drops the reply inside a session
					cs.send(0, "INSTREAM size limit exceeded. ERROR", term)
				}
				return req, false
			}
			if _, err := io.CopyN(&data, cs.r, n); err != nil {
				return req, false
			}
		}
		req.Data = data.Bytes()
	}
	s.record(req)
	return req, true
}

func (s *Server) record(r Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = append(s.reqs, r)
}

func (s *Server) answer(cs *connState, req Request, term byte) {
	s.mu.Lock()
	h := s.handlers[req.Command]
	disabled := s.disabled[req.Command]
	s.mu.Unlock()
	var resp Response
	switch {
	case disabled:
		resp = Response{Replies: []string{"COMMAND UNAVAILABLE"}}
	case h != nil:
		resp = h(req)
	default:
		resp = s.Default(req)
	}
	if resp.Delay > 0 {
		select {
		case <-time.After(resp.Delay):
		case <-s.stop:
			return
		}
	}
	if resp.Hangup {
		cs.c.Close()
		return
	}
	for _, r := range resp.Replies {
		if cs.send(req.ID, r, term) != nil {
			return
		}
	}
}

// StatsReply is the default STATS answer, as clamd 1.4.6 prints it.
const StatsReply = "POOLS: 1\n\nSTATE: VALID PRIMARY\nTHREADS: live 1  idle 0 max 2 idle-timeout 30\n" +
	"QUEUE: 0 items\n\tSTATS 0.000004 \n\nMEMSTATS: heap N/A mmap N/A used N/A free N/A releasable N/A " +
	"pools 1 pools_used 5.922M pools_total 5.999M\nEND"

// Default answers like clamd 1.4 with the server's signatures loaded.
func (s *Server) Default(req Request) Response {
	one := func(r string) Response { return Response{Replies: []string{r}} }
	switch req.Command {
	case "PING":
		return one("PONG")
	case "VERSION":
		s.mu.Lock()
		defer s.mu.Unlock()
		return one(s.version)
	case "STATS":
		return one(StatsReply)
	case "RELOAD":
		return one("RELOADING")
	case "INSTREAM":
		return one("stream: " + s.verdict(req.Data))
	case "FILDES":
		return one(fmt.Sprintf("fd[%d]: %s", req.FD, s.verdict(req.Data)))
	case "SCAN", "CONTSCAN", "MULTISCAN", "ALLMATCHSCAN":
		return s.scanPath(req)
	}
	return one("UNKNOWN COMMAND")
}

func (s *Server) verdict(data []byte) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for pat, name := range s.signatures {
		if bytes.Contains(data, []byte(pat)) {
			return name + " FOUND"
		}
	}
	return "OK"
}

// scanPath reads files on the server's side like clamd: a FOUND line per
// match (SCAN stops at the first), an ERROR line per unreadable path, and
// "path: OK" when nothing was found and nothing failed.
func (s *Server) scanPath(req Request) Response {
	var out []string
	found := false
	err := filepath.WalkDir(req.Arg, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			out = append(out, fmt.Sprintf("%s: File path check failure: %s. ERROR", p, errText(err)))
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			out = append(out, fmt.Sprintf("%s: Access denied. ERROR", p))
			return nil
		}
		if v := s.verdict(data); v != "OK" {
			out = append(out, p+": "+v)
			found = true
			if req.Command == "SCAN" {
				return fs.SkipAll
			}
		}
		return nil
	})
	if err != nil {
		out = append(out, fmt.Sprintf("%s: %v. ERROR", req.Arg, err))
	}
	if len(out) == 0 && !found {
		out = append(out, req.Arg+": OK")
	}
	return Response{Replies: out}
}

func errText(err error) string {
	if errors.Is(err, fs.ErrNotExist) {
		return "No such file or directory"
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return err.Error()
}
