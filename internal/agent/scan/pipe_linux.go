package scan

import (
	"context"
	"fmt"

	"github.com/avfleet/avfleet/internal/clamd"
)

// pipelineEngine is an Engine that can also pass descriptors on one
// connection driven by the walker itself (clamd over a unix socket).
type pipelineEngine interface {
	pipelined() bool
	openPipeline(ctx context.Context) (*clamd.Pipeline, error)
}

func (e clamdEngine) pipelined() bool { return e.c.Addr.Network == "unix" }

func (e clamdEngine) openPipeline(ctx context.Context) (*clamd.Pipeline, error) {
	return e.c.Pipeline(ctx)
}

// pipeDepth is how many FILDES requests a pipe keeps in flight for clamd's
// workers threads: two queued behind each thread, and two more. A thread
// that finishes takes the next request at once; the scanner's thread, which
// must wait for a core while clamd's threads use them all, refills the queue
// later without leaving a clamd thread idle. With one request queued in all,
// the machine sat idle 20% longer during a 20,000-file scan (bench/scan.sh),
// and clamd's default MaxQueue (100; the agent writes max(100, 4*threads))
// holds this many with room to spare.
func pipeDepth(workers int) int { return 2*workers + 2 }

// pipe scans over one IDSESSION with up to limit FILDES requests in flight,
// all from the walker's goroutine with blocking system calls, as clamdscan
// --multiscan --fdpass does. The worker design (a goroutine per request
// slot, a reader goroutine per session) cost about three goroutine
// hand-offs per file, each a futex wake-up and often an OS thread switch:
// on a machine whose cores clamd keeps busy, that CPU came out of clamd's
// share.
type pipe struct {
	r        *run
	eng      pipelineEngine
	limit    int
	conn     *clamd.Pipeline
	inflight map[int]*prepared
}

// submit opens j's file and sends it, first collecting answers while
// limit requests are in flight.
func (pp *pipe) submit(j *job) {
	r := pp.r
	for len(pp.inflight) >= pp.limit && r.ctx.Err() == nil {
		pp.collect()
	}
	if r.ctx.Err() != nil || r.pace() != nil {
		j.dir.release()
		return
	}
	p := r.prepare(j)
	if p == nil {
		j.dir.release()
		return
	}
	pp.send(p)
}

// send passes p's descriptor on the connection, opening one if needed; a
// file whose second connection fails too is counted clamd_error.
func (pp *pipe) send(p *prepared) {
	r := pp.r
	var last error
	for r.ctx.Err() == nil {
		if pp.conn == nil {
			err := r.retryDial(func(ctx context.Context) (err error) {
				pp.conn, err = pp.eng.openPipeline(ctx)
				return err
			})
			if err != nil {
				pp.conn = nil
				break
			}
		}
		p.tries++
		id, err := pp.conn.SendFD(r.ctx, p.fd)
		if err == nil {
			r.current.Store(&p.j.path)
			pp.inflight[id] = p
			return
		}
		last = err
		pp.broken(err)
		if p.tries >= 2 {
			pp.finish(p, Verdict{}, last)
			return
		}
	}
	pp.finish(p, Verdict{}, r.ctx.Err())
}

// collect waits for one answer and deals with it.
func (pp *pipe) collect() {
	r := pp.r
	id, reply, err := pp.conn.Recv(r.ctx)
	if err != nil && id == 0 {
		if r.ctx.Err() == nil {
			pp.broken(err)
		}
		return
	}
	p := pp.inflight[id]
	if p == nil {
		pp.broken(fmt.Errorf("clamd answered under id %d, which is not owed", id))
		return
	}
	delete(pp.inflight, id)
	var res clamd.Result
	if err == nil {
		res, err = pp.conn.FildesResult(reply, p.j.path)
	}
	v, err := verdict(res, err)
	if err == nil {
		r.connFailures.Store(0)
	}
	pp.finish(p, v, err)
}

// broken closes a failed connection and sends what was in flight on it
// again on a new one, once per file.
func (pp *pipe) broken(err error) {
	r := pp.r
	pp.conn.Close()
	pp.conn = nil
	if r.connFailures.Add(1) > maxConnFailures {
		r.fail(fmt.Errorf("clamd failed %d times in a row: %w", maxConnFailures, err))
	}
	retry := pp.inflight
	pp.inflight = make(map[int]*prepared, pp.limit)
	for _, q := range retry {
		if q.tries >= 2 || r.ctx.Err() != nil {
			pp.finish(q, Verdict{}, err)
		} else {
			pp.send(q)
		}
	}
}

func (pp *pipe) finish(p *prepared, v Verdict, err error) {
	pp.r.answered(p, v, err)
	p.close()
	p.j.dir.release()
}

// drain collects every answer still owed (or gives up on them when the scan
// is cancelled) and closes the connection.
func (pp *pipe) drain() {
	r := pp.r
	for len(pp.inflight) > 0 && r.ctx.Err() == nil {
		pp.collect()
	}
	for id, p := range pp.inflight {
		delete(pp.inflight, id)
		pp.finish(p, Verdict{}, context.Cause(r.ctx))
	}
	if pp.conn != nil {
		pp.conn.Close()
		pp.conn = nil
	}
}
