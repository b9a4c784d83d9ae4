package cvd

import (
	"io"
	"sync"
)

// chunkPipe hands filled buffers from one goroutine to the next with a small
// fixed pool of buffers, so the stages of a verification (read+MD5, inflate,
// tar+SHA-256) run on different cores while memory stays bounded by
// nbuf*size per pipe. Unlike io.Pipe, the writer never waits for the reader
// to copy a chunk out: it only waits when every buffer is in flight.
type chunkPipe struct {
	ch   chan []byte
	free chan []byte
	done chan struct{} // closed when the reader stops
	stop sync.Once

	err error // why the writer stopped; read after ch is closed

	cur  []byte // unread part of the reader's current chunk
	held []byte // the buffer cur points into, returned to free when empty
}

// chunkPool recycles pipe buffers between verifications: a mirror checking
// many small files would otherwise allocate 2 MiB per file.
var chunkPool = sync.Pool{New: func() any { return make([]byte, pipeChunk) }}

func newChunkPipe(nbuf int) *chunkPipe {
	p := &chunkPipe{
		ch:   make(chan []byte, nbuf),
		free: make(chan []byte, nbuf),
		done: make(chan struct{}),
	}
	for i := 0; i < nbuf; i++ {
		p.free <- chunkPool.Get().([]byte)
	}
	return p
}

// recycle returns the buffers still owned by the pipe to the pool. Only call
// it when neither side will touch the pipe again.
func (p *chunkPipe) recycle() {
	for {
		select {
		case b := <-p.free:
			chunkPool.Put(b[:cap(b)])
		case b, ok := <-p.ch:
			if !ok {
				p.ch = nil
				continue
			}
			chunkPool.Put(b[:cap(b)])
		default:
			if p.held != nil {
				chunkPool.Put(p.held[:cap(p.held)])
				p.held, p.cur = nil, nil
			}
			return
		}
	}
}

// get returns an empty buffer for the writer, or nil once the reader stopped.
func (p *chunkPipe) get() []byte {
	select {
	case b := <-p.free:
		return b[:cap(b)]
	case <-p.done:
		return nil
	}
}

// put sends a filled buffer; false once the reader stopped.
func (p *chunkPipe) put(b []byte) bool {
	if len(b) == 0 {
		p.release(b)
		return true
	}
	select {
	case p.ch <- b:
		return true
	case <-p.done:
		return false
	}
}

func (p *chunkPipe) release(b []byte) {
	select {
	case p.free <- b:
	default:
	}
}

// closeWrite ends the stream; the reader sees err, or io.EOF when err is nil.
func (p *chunkPipe) closeWrite(err error) {
	p.err = err
	close(p.ch)
}

// closeRead tells the writer that nothing more will be read.
func (p *chunkPipe) closeRead() { p.stop.Do(func() { close(p.done) }) }

// Read implements io.Reader for the consuming stage.
func (p *chunkPipe) Read(b []byte) (int, error) {
	for len(p.cur) == 0 {
		if p.held != nil {
			p.release(p.held)
			p.held = nil
		}
		c, ok := <-p.ch
		if !ok {
			if p.err != nil {
				return 0, p.err
			}
			return 0, io.EOF
		}
		p.cur, p.held = c, c
	}
	n := copy(b, p.cur)
	p.cur = p.cur[n:]
	return n, nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}
