// Package splice copies bytes between two streams, both ways, with buffers
// that cost little while a stream is idle. Gateway, portal and native
// client keep thousands of tunnelled streams open, most of them idle, so a
// stream holds a small buffer while it waits and borrows a large one only
// while data keeps coming. It imports only the standard library.
package splice

import (
	"errors"
	"fmt"
	"io"
	"sync"
)

// Buffer sizes: an idle stream waits with a small buffer; a read that fills
// it is taken as bulk, and the next reads use a large one from a pool.
const (
	smallSize = 2 << 10
	largeSize = 32 << 10
)

// buffers lends large buffers; tests count what is lent.
type buffers interface {
	get() *[]byte
	put(*[]byte)
}

// syncPool is the buffers every Copy shares.
type syncPool struct{ p sync.Pool }

func (s *syncPool) get() *[]byte  { return s.p.Get().(*[]byte) }
func (s *syncPool) put(b *[]byte) { s.p.Put(b) }

// large is shared by all streams of the process: that is its point, a
// buffer returned by an idle stream serves a busy one.
var large buffers = &syncPool{p: sync.Pool{New: func() any {
	b := make([]byte, largeSize)
	return &b
}}}

var errInvalidWrite = errors.New("invalid write result")

// Copy copies from src to dst until EOF or an error, like io.Copy, and
// returns the bytes written; EOF is not an error. It reads into a 2 KiB
// buffer of its own while reads come back short (an interactive or idle
// stream), and into a 32 KiB buffer from a shared pool after a read filled
// the small one, giving it back as soon as a read comes back short. So an
// idle stream holds about 2 KiB, a bulk one gets full-size reads. It never
// uses io.ReaderFrom or io.WriterTo, whose fallbacks allocate a 32 KiB
// buffer for the life of the copy.
func Copy(dst io.Writer, src io.Reader) (int64, error) {
	return copyWith(large, dst, src)
}

func copyWith(pool buffers, dst io.Writer, src io.Reader) (written int64, err error) {
	small := make([]byte, smallSize)
	var big *[]byte
	defer func() {
		if big != nil {
			pool.put(big)
		}
	}()
	for {
		buf := small
		if big != nil {
			buf = *big
		}
		nr, rerr := src.Read(buf)
		if nr > 0 {
			nw, werr := dst.Write(buf[:nr])
			if nw < 0 || nw > nr {
				nw, werr = 0, errInvalidWrite
			}
			written += int64(nw)
			if werr != nil {
				return written, werr
			}
			if nw != nr {
				return written, io.ErrShortWrite
			}
		}
		switch {
		case big == nil && nr == len(small):
			big = pool.get()
		case big != nil && nr < len(*big):
			// A short read: the burst is over, so the stream may now
			// wait; it waits with the small buffer.
			pool.put(big)
			big = nil
		}
		if rerr != nil {
			if rerr == io.EOF {
				return written, nil
			}
			return written, rerr
		}
	}
}

// closeWriter is a stream that can end its sending side while it keeps
// receiving (*net.TCPConn, *net.UnixConn, *tls.Conn).
type closeWriter interface {
	CloseWrite() error
}

// Join copies a to b and b to a at once, and returns the bytes copied each
// way. When one side's reading ends (EOF), the other side's writing is
// ended with CloseWrite, when it has one, and the other direction goes on;
// Join returns when both directions have ended. A side without CloseWrite
// cannot pass the end on, so its end ends both directions. An error in
// either direction closes both sides at once, ending the other direction;
// err is that first error (what the closing then causes is not reported).
// Join closes both a and b before it returns.
func Join(a, b io.ReadWriteCloser) (aToB, bToA int64, err error) {
	return joinWith(large, a, b)
}

func joinWith(pool buffers, a, b io.ReadWriteCloser) (aToB, bToA int64, err error) {
	j := &joiner{a: a, b: b}
	done := make(chan struct{})
	go func() {
		defer close(done)
		bToA = j.direction(pool, a, b)
	}()
	aToB = j.direction(pool, b, a)
	<-done
	j.closeBoth()
	return aToB, bToA, j.err
}

// joiner holds what the two directions of a Join share.
type joiner struct {
	a, b io.ReadWriteCloser

	mu      sync.Mutex
	stopped bool  // both sides are being closed
	err     error // the error that stopped them, if any
	closed  sync.Once
}

// direction copies src to dst and passes the end on.
func (j *joiner) direction(pool buffers, dst io.Writer, src io.Reader) int64 {
	n, err := copyWith(pool, dst, src)
	if err != nil {
		j.stop(err)
		return n
	}
	cw, ok := dst.(closeWriter)
	if !ok {
		j.stop(nil)
		return n
	}
	if err := cw.CloseWrite(); err != nil {
		j.stop(fmt.Errorf("pass on the end of the stream: %w", err))
	}
	return n
}

// stop closes both sides, keeping err if it is the first reason.
func (j *joiner) stop(err error) {
	j.mu.Lock()
	if !j.stopped {
		j.stopped, j.err = true, err
	}
	j.mu.Unlock()
	j.closeBoth()
}

func (j *joiner) closeBoth() {
	j.closed.Do(func() {
		j.a.Close()
		j.b.Close()
	})
}
