package guacrec

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
)

// KeyFrame is one entry of the index.
type KeyFrame struct {
	// Offset is where the key frame's first instruction starts in the
	// recording.
	Offset int64 `json:"offset"`
	// Timestamp is the argument of the sync ending the key frame's frame,
	// in milliseconds like every sync.
	Timestamp int64 `json:"timestamp"`
}

// Index lists a recording's key frames by increasing offset.
type Index []KeyFrame

// At returns the key frame to seek to for time ts: the nearest at or
// before ts, the latest one when several share a timestamp. Before the
// first key frame it returns the zero KeyFrame: the start of the
// recording, always a valid place to start. (Not named Seek, which go vet
// reserves for io.Seeker's signature.)
func (ix Index) At(ts int64) KeyFrame {
	i := sort.Search(len(ix), func(i int) bool { return ix[i].Timestamp > ts })
	if i == 0 {
		return KeyFrame{}
	}
	return ix[i-1]
}

// Within returns the key frames that start before size: those of a
// recording truncated to size bytes.
func (ix Index) Within(size int64) Index {
	i := sort.Search(len(ix), func(i int) bool { return ix[i].Offset >= size })
	return ix[:i]
}

// The index header's fields.
const (
	indexFormat  = "keyway-guac-index"
	indexVersion = 1
)

type indexHeader struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
}

// Limits of ReadIndex. Our lines are under 80 bytes; a key frame every
// five seconds fills maxKeyFrames in two months.
const (
	maxIndexLine = 256
	maxKeyFrames = 1 << 20
)

func appendIndexHeader(dst []byte) []byte {
	dst = append(dst, `{"format":"`+indexFormat+`","version":`...)
	dst = strconv.AppendInt(dst, indexVersion, 10)
	return append(dst, '}', '\n')
}

func appendKeyFrame(dst []byte, kf KeyFrame) []byte {
	dst = append(dst, `{"offset":`...)
	dst = strconv.AppendInt(dst, kf.Offset, 10)
	dst = append(dst, `,"timestamp":`...)
	dst = strconv.AppendInt(dst, kf.Timestamp, 10)
	return append(dst, '}', '\n')
}

// WriteIndex writes ix as an index file, for example to rewrite the index
// of a recording truncated after a crash.
func WriteIndex(w io.Writer, ix Index) error {
	buf := appendIndexHeader(nil)
	for _, kf := range ix {
		buf = appendKeyFrame(buf, kf)
	}
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("guacrec: write index: %w", err)
	}
	return nil
}

// ReadIndex reads and checks an index file. When its last line was cut
// short it returns the key frames before it and an error wrapping
// ErrTruncated.
func ReadIndex(r io.Reader) (Index, error) {
	br := bufio.NewReaderSize(r, maxIndexLine+1)
	line, err := indexLine(br, 1)
	if err == io.EOF {
		err = fmt.Errorf("%w: index has no header", ErrTruncated)
	}
	if err != nil {
		return nil, err
	}
	var h indexHeader
	if err := strictJSON(line, &h); err != nil || h.Format != indexFormat {
		return nil, fmt.Errorf("%w: not an index header: %q", ErrMalformed, line)
	}
	if h.Version != indexVersion {
		return nil, fmt.Errorf("%w: index version %d, want %d", ErrMalformed, h.Version, indexVersion)
	}
	var ix Index
	for n := 2; ; n++ {
		line, err := indexLine(br, n)
		if err == io.EOF {
			return ix, nil
		}
		if err != nil {
			return ix, err
		}
		if len(ix) == maxKeyFrames {
			return ix, fmt.Errorf("%w: more than %d key frames", ErrTooLarge, maxKeyFrames)
		}
		var e struct {
			Offset    *int64 `json:"offset"`
			Timestamp *int64 `json:"timestamp"`
		}
		if err := strictJSON(line, &e); err != nil || e.Offset == nil || e.Timestamp == nil {
			return ix, fmt.Errorf("%w: index line %d: %q", ErrMalformed, n, line)
		}
		kf := KeyFrame{Offset: *e.Offset, Timestamp: *e.Timestamp}
		if kf.Offset < 0 || kf.Timestamp < 0 {
			return ix, fmt.Errorf("%w: index line %d: negative offset or timestamp", ErrMalformed, n)
		}
		if len(ix) > 0 && (kf.Offset <= ix[len(ix)-1].Offset || kf.Timestamp < ix[len(ix)-1].Timestamp) {
			return ix, fmt.Errorf("%w: index line %d: out of order", ErrMalformed, n)
		}
		ix = append(ix, kf)
	}
}

// indexLine returns line n without its newline.
func indexLine(br *bufio.Reader, n int) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	switch {
	case err == nil:
		return line[:len(line)-1], nil
	case errors.Is(err, bufio.ErrBufferFull):
		return nil, fmt.Errorf("%w: index line %d longer than %d bytes", ErrTooLarge, n, maxIndexLine)
	case err == io.EOF && len(line) == 0:
		return nil, io.EOF
	case err == io.EOF:
		return nil, fmt.Errorf("%w: index line %d has no end", ErrTruncated, n)
	}
	return nil, fmt.Errorf("guacrec: read index: %w", err)
}

// strictJSON decodes one JSON object with only v's fields.
func strictJSON(line []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("data after the object")
	}
	return nil
}
