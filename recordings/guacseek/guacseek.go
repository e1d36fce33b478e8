// Package guacseek starts a desktop recording at any point in time.
//
// A key frame lets a player start near a point, but it must still replay
// every frame from the key frame to the point, and a browser pays for each
// one: on a busy screen (a scrolling terminal) that is tens of
// milliseconds a frame, seconds for a seek. From draws those frames here
// instead, with the same renderer the video export uses, and gives the
// player one frame holding the screen at the point sought, followed by
// the recording's own frames from there.
package guacseek

import (
	"bytes"
	"compress/zlib"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"strconv"

	"github.com/keyway-dev/keyway/gateway/guac"
	"github.com/keyway-dev/keyway/recordings/guacrec"
	"github.com/keyway-dev/keyway/recordings/guacrender"
	"github.com/keyway-dev/keyway/recordings/indexed"
)

// cursorLayer is the buffer the gateway draws the pointer's image in.
const cursorLayer = "-1"

// From returns the recording in src (size bytes from a key frame, or from
// the recording's start) as it plays from time at (a sync timestamp): a
// frame with the screen and the pointer as they are at that time, timed
// at, then src's frames after at, unchanged. It returns the stream and
// its length. When no frame of src but its first lies at or before at,
// the stream is src itself.
//
// src comes from a gateway, so it is read within guacrec.RecordingLimits
// and drawn within guacrender.DefaultLimits; instructions the player would
// skip are skipped, and a recording cut short ends where it was cut.
func From(src io.ReaderAt, size, at int64) (io.Reader, int64, error) {
	rd := guacrec.NewReader(io.NewSectionReader(src, 0, size), guacrec.RecordingLimits)
	d := guacrender.New(guacrender.DefaultLimits)
	var (
		frame  []guac.Instruction
		resume int64 // where the first frame not drawn starts
		frames int   // frames drawn
		cursor pointer
	)
	for {
		in, err := rd.Next()
		if errors.Is(err, io.EOF) || errors.Is(err, guacrec.ErrTruncated) {
			resume = rd.Offset()
			break
		}
		if err != nil {
			return nil, 0, fmt.Errorf("read the recording: %w", err)
		}
		if in.Opcode != "sync" {
			frame = append(frame, in)
			continue
		}
		ts, err := strconv.ParseInt(in.Args[0], 10, 64)
		if err != nil {
			return nil, 0, fmt.Errorf("%w: sync %q", guacrec.ErrMalformed, in.Args[0])
		}
		if ts > at && frames > 0 {
			break
		}
		for _, in := range frame {
			cursor.see(in)
			// An instruction the player cannot draw is skipped, as the
			// player skips it.
			_ = d.Apply(in)
		}
		frame = frame[:0]
		frames++
		resume = rd.Offset()
	}
	if frames <= 1 {
		return io.NewSectionReader(src, 0, size), size, nil
	}
	var buf bytes.Buffer
	if err := wholeScreen(&buf, d.Screen()); err != nil {
		return nil, 0, fmt.Errorf("draw the screen at %d: %w", at, err)
	}
	buf.Write(cursor.last)
	buf.Write(guac.New("sync", strconv.FormatInt(at, 10)).AppendTo(nil))
	rest := io.NewSectionReader(src, resume, size-resume)
	return io.MultiReader(&buf, rest), int64(buf.Len()) + rest.Size(), nil
}

// pointer keeps the instructions that last set the pointer's shape:
// "size" of the cursor buffer, the image drawn into it, and "cursor".
type pointer struct {
	building []byte
	stream   string // the image stream drawing into the cursor buffer
	last     []byte
}

func (p *pointer) see(in guac.Instruction) {
	switch {
	case in.Opcode == "size" && len(in.Args) > 0 && in.Args[0] == cursorLayer:
		p.building = in.AppendTo(p.building[:0])
	case in.Opcode == "img" && len(in.Args) > 2 && in.Args[2] == cursorLayer:
		p.stream = in.Args[0]
		p.building = in.AppendTo(p.building)
	case (in.Opcode == "blob" || in.Opcode == "end") && len(in.Args) > 0 && p.stream != "" && in.Args[0] == p.stream:
		p.building = in.AppendTo(p.building)
		if in.Opcode == "end" {
			p.stream = ""
		}
	case in.Opcode == "img" && len(in.Args) > 0 && in.Args[0] == p.stream:
		// The stream's number was taken over before it ended.
		p.stream = ""
	case in.Opcode == "cursor" && len(in.Args) > 2 && in.Args[2] == cursorLayer:
		p.last = in.AppendTo(append(p.last[:0], p.building...))
	}
}

// band is the height of the stripes the screen is sent in, as the
// gateway's key frames are: the browser decodes each as it arrives.
const band = 64

// wholeScreen writes screen as a key frame does: "size", then the screen
// in bands drawn over (the screen is opaque, so that replaces it): bands
// of at most 256 colours (text, most of a desktop) as palette indexes,
// which the player decodes in a fraction of a PNG's time, the others as
// PNG.
func wholeScreen(w *bytes.Buffer, screen *image.RGBA) error {
	b := screen.Bounds()
	w.Write(guac.New("size", "0", strconv.Itoa(b.Dx()), strconv.Itoa(b.Dy())).AppendTo(nil))
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	zw, _ := zlib.NewWriterLevel(nil, zlib.BestSpeed) // a valid level: no error
	ix := indexed.NewEncoder(zw)
	var img bytes.Buffer
	var out []byte
	for i, y := 0, b.Min.Y; y < b.Max.Y; i, y = i+1, y+band {
		r := image.Rect(b.Min.X, y, b.Max.X, min(y+band, b.Max.Y))
		img.Reset()
		mimetype := indexed.Mimetype
		if idx, pal, ok := ix.Palette(screen.SubImage(r).(*image.RGBA)); ok {
			if err := ix.Encode(&img, idx, r.Dx(), r.Dy(), pal); err != nil {
				return err
			}
		} else {
			mimetype = "image/png"
			if err := enc.Encode(&img, screen.SubImage(r)); err != nil {
				return err
			}
		}
		// Streams 1 to 63 in turn: each ends before the next opens.
		st := strconv.Itoa(1 + i%63)
		w.Write(guac.New("img", st, "14", "0", mimetype, "0", strconv.Itoa(y-b.Min.Y)).AppendTo(nil))
		for data := img.Bytes(); len(data) > 0; {
			n := min(len(data), guac.BlobChunk)
			out = guac.AppendBlob(out[:0], st, data[:n])
			w.Write(out)
			data = data[n:]
		}
		w.Write(guac.New("end", st).AppendTo(nil))
	}
	return nil
}
