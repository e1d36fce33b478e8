package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Windows of the ranged GETs an opened recording is read with: a read
// after a seek fetches minWindow from where it lands, and each GET that
// continues the one before fetches twice as much, up to maxWindow. So a
// seek near the end of a long recording fetches little, and playing it
// through makes few requests.
const (
	minWindow = 256 << 10
	maxWindow = 16 << 20
)

// object reads a recording with ranged GETs. Reads are serialised: the
// callers (players, exports) read one place at a time.
type object struct {
	ctx  context.Context // the request reading it
	b    *Bucket
	key  string
	size int64

	mu      sync.Mutex
	pos     int64 // of Read and Seek
	body    io.ReadCloser
	bodyAt  int64 // the offset body's next byte has
	bodyEnd int64 // where body's range ends
	window  int64
	closed  bool
}

func (o *object) Read(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	n, err := o.readAt(p, o.pos, false)
	o.pos += int64(n)
	return n, err
}

func (o *object) ReadAt(p []byte, off int64) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.readAt(p, off, true)
}

// readAt fills p from off (all of it with full, as io.ReaderAt must),
// from the open range when it continues there and else from a new one.
func (o *object) readAt(p []byte, off int64, full bool) (int, error) {
	if o.closed {
		return 0, errors.New("objstore: read of a closed recording")
	}
	if off < 0 {
		return 0, errors.New("objstore: negative offset")
	}
	n := 0
	for n < len(p) {
		at := off + int64(n)
		if at >= o.size {
			return n, io.EOF
		}
		if o.body == nil || o.bodyAt != at || o.bodyAt >= o.bodyEnd {
			if err := o.open(at); err != nil {
				return n, err
			}
		}
		want := min(int64(len(p)-n), o.bodyEnd-o.bodyAt)
		m, err := io.ReadFull(o.body, p[n:n+int(want)])
		n += m
		o.bodyAt += int64(m)
		if err != nil {
			o.closeBody()
			return n, fmt.Errorf("objstore: read %s at %d: %w", o.key, at, io.ErrUnexpectedEOF)
		}
		if !full && n > 0 {
			return n, nil
		}
	}
	return n, nil
}

// open starts a ranged GET at off: a larger window when it continues the
// last one, the smallest after a seek.
func (o *object) open(off int64) error {
	if o.body != nil && off == o.bodyEnd {
		o.window = min(2*o.window, maxWindow)
	} else {
		o.window = minWindow
	}
	o.closeBody()
	end := min(o.size, off+o.window)
	rng := fmt.Sprintf("bytes=%d-%d", off, end-1)
	out, err := o.b.client.GetObject(o.ctx, &s3.GetObjectInput{Bucket: &o.b.bucket, Key: &o.key, Range: &rng})
	if err != nil {
		return fmt.Errorf("objstore: read %s (%s): %w", o.key, rng, err)
	}
	if n := aws.ToInt64(out.ContentLength); n != end-off {
		out.Body.Close()
		return fmt.Errorf("objstore: read %s (%s): the server sent %d bytes", o.key, rng, n)
	}
	o.body, o.bodyAt, o.bodyEnd = out.Body, off, end
	return nil
}

func (o *object) closeBody() {
	if o.body != nil {
		o.body.Close()
		o.body = nil
	}
}

func (o *object) Seek(offset int64, whence int) (int64, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += o.pos
	case io.SeekEnd:
		offset += o.size
	default:
		return 0, errors.New("objstore: invalid whence")
	}
	if offset < 0 {
		return 0, errors.New("objstore: negative position")
	}
	o.pos = offset
	return offset, nil
}

func (o *object) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closeBody()
	o.closed = true
	return nil
}
