package display

import (
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"sync"
	"time"

	"github.com/keyway-dev/keyway/gateway/wire"
)

// MaxFramesInFlight is how many frames may await the browser's sync
// acknowledgement before no more are sent: a slow link then gets fewer
// frames, each with everything that changed meanwhile, instead of a
// growing queue. guacamole-common-js draws one frame per animation frame
// and acknowledges it then, so with two the server's next frame was often
// still being asked for and encoded when the browser could have drawn it:
// three gave the scrolling benchmark 28 frames a second where two gave 21.
const MaxFramesInFlight = 3

// Cursor is the remote pointer's shape and hotspot.
type Cursor struct {
	Hotspot image.Point
	Image   *image.RGBA
}

// Change is what a Source reports changed since it was last asked.
type Change struct {
	// Rects are regions whose pixels changed.
	Rects []image.Rectangle
	// Resized reports a new screen size; all of it is then new.
	Resized bool
	// Cursor is a new pointer shape, nil if unchanged.
	Cursor *Cursor
	// Clipboard is the remote clipboard's new text, when HasClipboard.
	Clipboard    string
	HasClipboard bool
	// ClipboardNotice says why the browser's clipboard text did not reach
	// the remote clipboard (the server has none open), for the user.
	ClipboardNotice string
}

// Source is a remote screen that says when it changed (an RDP session,
// where the server pushes its drawing).
type Source interface {
	Framebuffer
	Size() (w, h int)
	// Changed is signalled when Take has something to report.
	Changed() <-chan struct{}
	// Take returns what changed since the last Take.
	Take() Change
	// Done is closed when the remote session ended; Err says why.
	Done() <-chan struct{}
	Err() error
}

// Serve runs a desktop session over stream until the browser leaves, the
// remote session ends or ctx is done: the screen goes out as display
// instructions, paced by the browser's acknowledgements, and the browser's
// input goes to remote within limits. ended turns the remote session's end
// into the sentence the browser shows. Serve closes stream (when it is an
// io.Closer) before it returns, so its reader stops.
//
// rec, when not nil, records the session.
func Serve(ctx context.Context, stream io.ReadWriter, src Source, remote Remote, limits wire.Desktop, ended func(error) string, rec *Recording) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		if cl, ok := stream.(io.Closer); ok {
			cl.Close()
		}
	})
	defer stop()

	acks := make(chan struct{}, 16)
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	wg.Go(func() { errc <- ReadInput(ctx, stream, acks, limits, remote) })
	wg.Go(func() {
		err := push(ctx, stream, src, acks, limits, ended, rec)
		RecordingEnded(stream, err)
		errc <- err
	})
	err := <-errc
	cancel()
	if err2 := <-errc; err == nil {
		err = err2
	}
	wg.Wait()
	if errors.Is(err, io.EOF) || errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// push sends src's screen: all of it first, then what changed, a frame at
// a time while fewer than MaxFramesInFlight await acknowledgement.
func push(ctx context.Context, stream io.Writer, src Source, acks <-chan struct{}, limits wire.Desktop, ended func(error) string, rec *Recording) error {
	enc := NewEncoder(rec.Writer(stream))
	enc.SetIndexed(limits.IndexedImages)
	screen := NewScreen(enc)
	w, h := src.Size()
	if err := screen.Resize(w, h); err != nil {
		return err
	}
	whole := true
	changed := true
	inFlight := 0
	// Timestamps strictly increase: guacamole-common-js acknowledges a sync
	// only if it differs from the last one.
	var lastSync int64
	for {
		if changed && inFlight < MaxFramesInFlight {
			ch := src.Take()
			if err := frame(enc, screen, src, ch, whole, limits); err != nil {
				return err
			}
			lastSync = max(time.Now().UnixMilli(), lastSync+1)
			if err := enc.Sync(lastSync); err != nil {
				return err
			}
			if err := enc.Flush(); err != nil {
				return err
			}
			if err := rec.FrameEnd(screen, lastSync); err != nil {
				return err
			}
			whole, changed = false, false
			inFlight++
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-acks:
			inFlight = max(0, inFlight-1)
		case <-src.Changed():
			changed = true
		case <-src.Done():
			enc.Error(ended(src.Err()), 0x0203) // Guacamole's "upstream error"
			enc.Flush()
			return fmt.Errorf("remote desktop ended: %w", src.Err())
		}
	}
}

// frame encodes one change: pointer, clipboard, size, then pixels.
func frame(enc *Encoder, screen *Screen, src Source, ch Change, whole bool, limits wire.Desktop) error {
	if err := screen.Cursor(ch.Cursor); err != nil {
		return err
	}
	if ch.HasClipboard && !limits.NoClipboardOut {
		if err := enc.Clipboard(ch.Clipboard); err != nil {
			return err
		}
	}
	if ch.ClipboardNotice != "" {
		if err := enc.ClipboardNotice(ch.ClipboardNotice); err != nil {
			return err
		}
	}
	w, h := src.Size()
	if ch.Resized {
		if err := screen.Resize(w, h); err != nil {
			return err
		}
		whole = true
	}
	rects := ch.Rects
	if whole {
		rects = []image.Rectangle{image.Rect(0, 0, w, h)}
	}
	return screen.Update(src, rects)
}
