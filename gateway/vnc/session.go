package vnc

import (
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"sync"
	"time"

	"github.com/keyway-dev/keyway/gateway/display"
	"github.com/keyway-dev/keyway/gateway/wire"
)

// maxFramesInFlight is how many frames may await the browser's sync
// acknowledgement before the session stops asking the server for more.
const maxFramesInFlight = display.MaxFramesInFlight

// Serve runs the desktop over stream until either side ends or ctx is
// done: screen changes go out as Guacamole display instructions, and
// browser key, mouse and sync instructions come in. rec, when not nil,
// records the session. It closes the client.
func (c *Client) Serve(ctx context.Context, stream io.ReadWriter, limits wire.Desktop, rec *display.Recording) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Ending either side ends both: closing the connections unblocks the
	// goroutine still reading.
	stop := context.AfterFunc(ctx, func() {
		c.conn.Close()
		if cl, ok := stream.(io.Closer); ok {
			cl.Close()
		}
	})
	defer stop()
	defer c.conn.Close()

	// acks carries the browser's frame acknowledgements from input to
	// output; a full buffer only drops acknowledgements of frames the
	// output has long stopped waiting for.
	acks := make(chan struct{}, 16)
	var readers sync.WaitGroup
	errc := make(chan error, 2)
	go func() { errc <- display.ReadInput(ctx, stream, acks, limits, remote{c}) }()
	go func() {
		err := c.output(ctx, stream, acks, &readers, limits, rec)
		display.RecordingEnded(stream, err)
		errc <- err
	}()
	err := <-errc
	cancel()
	if err2 := <-errc; err == nil {
		err = err2
	}
	readers.Wait()
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// serverMessage is one message read from the server, or the error that
// ended reading.
type serverMessage struct {
	u   Update
	err error
}

// readMessages reads server messages for output, one at a time: the next
// is read only once output says it is done with the last, so the screen
// never runs ahead of what was encoded (a later CopyRect must find the
// pixels the browser has). It ends when the connection closes.
func (c *Client) readMessages(ctx context.Context, msgs chan<- serverMessage, done <-chan struct{}) {
	for {
		u, err := c.ReadMessage()
		select {
		case msgs <- serverMessage{u, err}:
		case <-ctx.Done():
			return
		}
		if err != nil {
			return
		}
		select {
		case <-done:
		case <-ctx.Done():
			return
		}
	}
}

// output sends the screen: the whole of it first, then what changed. It
// asks the server for a frame only while fewer than maxFramesInFlight
// await the browser's acknowledgement, but keeps reading the server's
// other messages (clipboard requests) meanwhile.
func (c *Client) output(ctx context.Context, stream io.Writer, acks <-chan struct{}, readers *sync.WaitGroup, limits wire.Desktop, rec *display.Recording) error {
	enc := display.NewEncoder(rec.Writer(stream))
	enc.SetIndexed(limits.IndexedImages)
	screen := display.NewScreen(enc)
	w, h := c.Size()
	if err := screen.Resize(w, h); err != nil {
		return err
	}
	msgs := make(chan serverMessage)
	done := make(chan struct{})
	readers.Go(func() { c.readMessages(ctx, msgs, done) })
	first := true
	pending := false
	inFlight := 0
	// Timestamps strictly increase: guacamole-common-js acknowledges a sync
	// only if its timestamp differs from the last one, and an unacknowledged
	// frame would hold the session forever.
	var lastSync int64
	for {
		if !pending && inFlight < maxFramesInFlight {
			if err := c.RequestUpdate(!first); err != nil {
				return fmt.Errorf("request screen update: %w", err)
			}
			pending = true
		}
		var m serverMessage
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-acks:
			inFlight = max(0, inFlight-1)
			continue
		case m = <-msgs:
		}
		if m.err != nil {
			err := m.err
			if ctx.Err() != nil {
				return ctx.Err()
			}
			// Tell the browser why before the stream closes (Guacamole
			// status 0x0203, upstream error).
			enc.Error("The VNC server closed the connection.", 0x0203)
			enc.Flush()
			return fmt.Errorf("the VNC server closed the connection: %w", err)
		}
		whole := first
		if m.u.Frame {
			pending, first = false, false
			inFlight++
			// Ask for the next frame before encoding this one, so the
			// server prepares it while we encode; the reader still waits
			// for done before applying it to the screen.
			if inFlight < maxFramesInFlight {
				if err := c.RequestUpdate(true); err != nil {
					return fmt.Errorf("request screen update: %w", err)
				}
				pending = true
			}
		}
		if err := c.forward(enc, screen, rec, m.u, whole, &lastSync, limits); err != nil {
			return err
		}
		select {
		case done <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// forward sends the browser what one server message changed; a frame
// (the answer to a request) ends with a sync.
func (c *Client) forward(enc *display.Encoder, screen *display.Screen, rec *display.Recording, u Update, first bool, lastSync *int64, limits wire.Desktop) error {
	if u.HasCutText && !limits.NoClipboardOut { // else the resource keeps its clipboard to itself
		if err := enc.Clipboard(u.CutText); err != nil {
			return err
		}
		if err := enc.Flush(); err != nil {
			return err
		}
	}
	if !u.Frame {
		return nil
	}
	if err := c.encode(enc, screen, u, first); err != nil {
		return err
	}
	*lastSync = max(time.Now().UnixMilli(), *lastSync+1)
	if err := enc.Sync(*lastSync); err != nil {
		return err
	}
	if err := enc.Flush(); err != nil {
		return err
	}
	return rec.FrameEnd(screen, *lastSync)
}

func (c *Client) encode(enc *display.Encoder, screen *display.Screen, u Update, whole bool) error {
	w, h := c.Size()
	if u.Cursor != nil {
		if err := screen.Cursor(&display.Cursor{Image: u.Cursor.Image, Hotspot: u.Cursor.Hotspot}); err != nil {
			return err
		}
	}
	if u.Resized {
		if err := screen.Resize(w, h); err != nil {
			return err
		}
		whole = true
	}
	shown := image.Rect(0, 0, w, h)
	// Only what is shown reaches the browser and the recording: changes
	// and moves within a pixel cache below the screen cost nothing there.
	var rects []image.Rectangle
	for _, r := range u.Rects {
		if r = r.Intersect(shown); !r.Empty() {
			rects = append(rects, r)
		}
	}
	// A move from outside the screen (out of the cache) brings pixels the
	// browser does not have, so they are sent; so is a later move out of
	// such pixels, which the browser gets only with this frame's images.
	var sent []image.Rectangle
	for _, cp := range u.Copies {
		dst := cp.Dst.Intersect(shown)
		if dst.Empty() {
			continue
		}
		src := dst.Add(cp.Src.Sub(cp.Dst.Min))
		if !src.In(shown) || overlapsAny(src, sent) {
			sent = append(sent, dst)
			continue
		}
		if err := screen.Copy(src.Min, dst); err != nil {
			return err
		}
	}
	rects = append(rects, sent...)
	if whole {
		rects = []image.Rectangle{shown}
	}
	return screen.Update(stableScreen{c}, rects)
}

func overlapsAny(r image.Rectangle, rs []image.Rectangle) bool {
	for _, o := range rs {
		if r.Overlaps(o) {
			return true
		}
	}
	return false
}

// stableScreen lets the display pipeline read the client's screen in
// place: output encodes a message before readMessages decodes the next
// into the screen, so it does not change meanwhile.
type stableScreen struct{ *Client }

func (s stableScreen) Pixels() *image.RGBA {
	s.fbMu.RLock()
	defer s.fbMu.RUnlock()
	return s.fb.SubImage(s.shown).(*image.RGBA)
}

// remote adapts the client to the display pipeline's input.
type remote struct{ c *Client }

func (r remote) Key(keysym uint32, down bool) error { return r.c.Key(keysym, down) }
func (r remote) Pointer(x, y int, mask uint8) error { return r.c.Pointer(x, y, mask) }
func (r remote) CutText(text string) error          { return r.c.CutText(text) }
func (r remote) Resize(w, h int) error {
	_, err := r.c.SetDesktopSize(w, h)
	return err
}
