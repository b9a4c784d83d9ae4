package clamd

import (
	"errors"
	"fmt"
	"strings"
)

// Status is clamd's verdict on one scanned object.
type Status int

const (
	StatusOK    Status = iota // clean (or not scanned because of a limit, with AlertExceedsMax off)
	StatusFound               // a signature matched
	StatusError               // clamd could not scan it; Result.Err says why
)

func (s Status) String() string {
	switch s {
	case StatusOK:
		return "OK"
	case StatusFound:
		return "FOUND"
	case StatusError:
		return "ERROR"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// Result is one line of a scan reply.
type Result struct {
	// Path is the scanned object as clamd names it: a server-side path for
	// SCAN/CONTSCAN/MULTISCAN, "stream" for INSTREAM. For ScanFD and ScanFile
	// it is the *os.File's Name(), since clamd only says "fd[N]".
	Path      string
	Signature string // StatusFound: the signature name, e.g. Eicar-Test-Signature
	Status    Status
	Err       string // StatusError: clamd's message, without the trailing " ERROR"
	// Others holds further signature names when clamd reports several matches
	// for one object (AllMatchScan yes); Signature is the first.
	Others []string
}

// Sentinel errors, matched with errors.Is on the *ReplyError a call returns.
var (
	// ErrUnknownCommand: clamd does not know the command (it may be older
	// than the client, or the command is not a socket command, e.g. SELFCHECK).
	ErrUnknownCommand = errors.New("unknown command")
	// ErrCommandUnavailable: the command exists but is disabled in
	// clamd.conf (Enable*Command no) or not allowed in this context.
	ErrCommandUnavailable = errors.New("command unavailable")
	// ErrSizeLimit: the INSTREAM data went past clamd's StreamMaxLength.
	ErrSizeLimit = errors.New("INSTREAM size limit exceeded (raise StreamMaxLength in clamd.conf)")
	// ErrNoReply: clamd closed the connection without answering. clamd 1.4
	// does this for scans when it has no engine loaded (after a failed
	// reload with ConcurrentDatabaseReload no) and when it is shutting down.
	ErrNoReply = errors.New("clamd closed the connection without a reply")
	// ErrClamdError: any other reply ending in ERROR that names no file.
	ErrClamdError = errors.New("clamd replied ERROR")
	// ErrProtocol: a reply that does not fit the protocol.
	ErrProtocol = errors.New("unexpected reply")
)

// ReplyError is a reply from clamd that is not the answer asked for.
type ReplyError struct {
	Command string // the command sent, e.g. "INSTREAM"
	Reply   string // clamd's reply as received (without the NUL)
	Err     error  // one of the sentinels above
	Addr    string // the clamd it came from, when known
}

func (e *ReplyError) Error() string {
	who := "clamd " + e.Command
	if e.Addr != "" {
		who += " " + e.Addr
	}
	if e.Reply == "" {
		return fmt.Sprintf("%s: %v", who, e.Err)
	}
	return fmt.Sprintf("%s: %v: %q", who, e.Err, e.Reply)
}

// withAddr names the clamd in a *ReplyError that does not name one yet.
func withAddr(err error, a Addr) error {
	var re *ReplyError
	if errors.As(err, &re) && re.Addr == "" {
		re.Addr = a.String()
	}
	return err
}

func (e *ReplyError) Unwrap() error { return e.Err }

// replyError classifies a reply that is not a result. It returns nil when
// reply is none of clamd's error forms.
func replyError(cmd, reply string) error {
	switch {
	case reply == "UNKNOWN COMMAND":
		return &ReplyError{Command: cmd, Reply: reply, Err: ErrUnknownCommand}
	case reply == "COMMAND UNAVAILABLE":
		return &ReplyError{Command: cmd, Reply: reply, Err: ErrCommandUnavailable}
	case strings.HasPrefix(reply, "INSTREAM size limit exceeded"):
		return &ReplyError{Command: cmd, Reply: reply, Err: ErrSizeLimit}
	case strings.HasSuffix(reply, " ERROR") || reply == "ERROR":
		return &ReplyError{Command: cmd, Reply: reply, Err: ErrClamdError}
	}
	return nil
}

// ParseResult parses one scan reply line. prefix, when not empty, is the
// object name clamd is expected to start the line with (the path sent with
// SCAN, or a directory for CONTSCAN/MULTISCAN, whose results all start with
// it): it decides where the path ends in an ERROR line, whose message may
// itself contain ": ". Without it the path ends at the first ": ".
func ParseResult(cmd, line, prefix string) (Result, error) {
	if err := replyErrorNoPath(cmd, line); err != nil {
		return Result{}, err
	}
	switch {
	case strings.HasSuffix(line, ": OK"):
		return Result{Path: strings.TrimSuffix(line, ": OK"), Status: StatusOK}, nil
	case strings.HasSuffix(line, " FOUND"):
		body := strings.TrimSuffix(line, " FOUND")
		// Signature names never contain ": ", paths may: split at the last one.
		i := strings.LastIndex(body, ": ")
		if i < 0 || i+2 == len(body) {
			break
		}
		return Result{Path: body[:i], Signature: body[i+2:], Status: StatusFound}, nil
	case strings.HasSuffix(line, " ERROR"):
		body := strings.TrimSuffix(line, " ERROR")
		from := 0
		if prefix != "" && strings.HasPrefix(body, prefix) {
			from = len(prefix)
		} else if strings.HasPrefix(body, "fd[") {
			if j := strings.Index(body, "]: "); j > 0 {
				from = j + 1
			}
		}
		i := strings.Index(body[from:], ": ")
		if i < 0 {
			break
		}
		i += from
		return Result{Path: body[:i], Err: body[i+2:], Status: StatusError}, nil
	}
	return Result{}, &ReplyError{Command: cmd, Reply: line, Err: ErrProtocol}
}

// replyErrorNoPath recognises the error replies that carry no object name.
func replyErrorNoPath(cmd, line string) error {
	if strings.HasSuffix(line, " ERROR") && strings.Contains(line, ": ") &&
		!strings.HasPrefix(line, "INSTREAM size limit exceeded") {
		return nil // "path: message ERROR" is a result
	}
	if strings.HasSuffix(line, ": OK") || strings.HasSuffix(line, " FOUND") {
		return nil
	}
	return replyError(cmd, line)
}

// mergeResults folds the replies of a single-object scan (FILDES, INSTREAM)
// into one Result, keeping extra AllMatchScan matches in Others.
func mergeResults(cmd string, lines []string, name string) (Result, error) {
	if len(lines) == 0 {
		return Result{}, &ReplyError{Command: cmd, Err: ErrNoReply}
	}
	var out Result
	for i, l := range lines {
		r, err := ParseResult(cmd, l, "")
		if err != nil {
			return Result{}, err
		}
		if i == 0 {
			out = r
			continue
		}
		switch {
		case r.Status == StatusFound && out.Status == StatusFound:
			out.Others = append(out.Others, r.Signature)
		case r.Status == StatusFound:
			out = r
		case r.Status == StatusError && out.Status == StatusOK:
			out = r
		}
	}
	if name != "" {
		out.Path = name
	}
	return out, nil
}
