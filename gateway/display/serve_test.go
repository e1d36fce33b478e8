package display

import (
	"context"
	"encoding/base64"
	"errors"
	"image"
	"image/color"
	"image/draw"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/gateway/guac"
	"github.com/keyway-dev/keyway/gateway/wire"
)

// pushSource is a Source whose screen the test paints.
type pushSource struct {
	mu      sync.Mutex
	fb      *image.RGBA
	pending Change
	changed chan struct{}
	done    chan struct{}
	err     error
}

func newPushSource(w, h int) *pushSource {
	return &pushSource{fb: image.NewRGBA(image.Rect(0, 0, w, h)), changed: make(chan struct{}, 1), done: make(chan struct{})}
}

func (p *pushSource) ReadRegion(dst *image.RGBA, r image.Rectangle) {
	p.mu.Lock()
	defer p.mu.Unlock()
	draw.Draw(dst, r, p.fb, r.Min, draw.Src)
}
func (p *pushSource) Size() (int, int)         { return p.fb.Bounds().Dx(), p.fb.Bounds().Dy() }
func (p *pushSource) Changed() <-chan struct{} { return p.changed }
func (p *pushSource) Done() <-chan struct{}    { return p.done }
func (p *pushSource) Err() error               { return p.err }
func (p *pushSource) Take() Change {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.pending
	p.pending = Change{}
	return c
}

func (p *pushSource) paint(r image.Rectangle, c color.RGBA) {
	p.mu.Lock()
	draw.Draw(p.fb, r, image.NewUniform(c), image.Point{}, draw.Src)
	p.pending.Rects = append(p.pending.Rects, r)
	p.mu.Unlock()
	select {
	case p.changed <- struct{}{}:
	default:
	}
}

// recordingRemote keeps the input it was given.
type recordingRemote struct {
	mu   sync.Mutex
	keys []uint32
	clip chan string
}

func (r *recordingRemote) Key(k uint32, down bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if down {
		r.keys = append(r.keys, k)
	}
	return nil
}
func (r *recordingRemote) Pointer(int, int, uint8) error { return nil }
func (r *recordingRemote) CutText(t string) error        { r.clip <- t; return nil }
func (r *recordingRemote) Resize(int, int) error         { return nil }

func TestServePacesFramesAndTakesInput(t *testing.T) {
	src := newPushSource(320, 200)
	remote := &recordingRemote{clip: make(chan string, 1)}
	gw, browser := net.Pipe()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	served := make(chan error, 1)
	go func() {
		served <- Serve(ctx, gw, src, remote, wire.Desktop{}, func(err error) string { return "the session ended: " + err.Error() }, nil)
	}()
	syncs := make(chan string, 64)
	other := make(chan guac.Instruction, 256)
	go func() {
		rd := guac.NewReader(browser, guac.Limits{MaxElement: 1 << 22, MaxElements: 16})
		for {
			in, err := rd.Read()
			if err != nil {
				close(syncs)
				return
			}
			if in.Opcode == "sync" {
				syncs <- in.Args[0]
			} else {
				other <- in
			}
		}
	}()
	send := func(in guac.Instruction) {
		if _, err := browser.Write(in.AppendTo(nil)); err != nil {
			t.Fatal(err)
		}
	}
	first := <-syncs
	// Unacknowledged: frames may come up to MaxFramesInFlight, then
	// nothing however much the screen changes.
	for i := range MaxFramesInFlight + 3 {
		src.paint(image.Rect(i*10, 0, i*10+10, 10), color.RGBA{255, 0, 0, 255})
		if i < MaxFramesInFlight-1 {
			<-syncs
		}
	}
	select {
	case s := <-syncs:
		t.Fatalf("a frame (sync %s) while %d await acknowledgement", s, MaxFramesInFlight)
	case <-time.After(100 * time.Millisecond): // a negative check: nothing may arrive
	}
	send(guac.New("sync", first))
	if _, ok := <-syncs; !ok {
		t.Fatal("no frame after the acknowledgement")
	}

	// Input reaches the remote side.
	send(guac.New("key", "97", "1"))
	send(guac.New("key", "97", "0"))
	send(guac.New("clipboard", "3", "text/plain"))
	send(guac.New("blob", "3", "aGVsbG8="))
	send(guac.New("end", "3"))
	if got := <-remote.clip; got != "hello" {
		t.Errorf("clipboard %q", got)
	}
	remote.mu.Lock()
	if len(remote.keys) != 1 || remote.keys[0] != 97 {
		t.Errorf("keys %v", remote.keys)
	}
	remote.mu.Unlock()

	// The remote session ends: the browser is told why.
	src.err = errors.New("logged off")
	close(src.done)
	if err := <-served; err == nil {
		t.Error("Serve returned nil for a remote end")
	}
	for {
		select {
		case in := <-other:
			if in.Opcode == "error" {
				if in.Args[0] != "the session ended: logged off" {
					t.Errorf("error %q", in.Args[0])
				}
				return
			}
		case <-ctx.Done():
			t.Fatal("no error instruction before the stream closed")
		}
	}
}

// TestClipboardNoticeReachesBrowser: a source's ClipboardNotice goes to
// the browser as the named pipe the desktop page shows in its clipboard
// panel.
func TestClipboardNoticeReachesBrowser(t *testing.T) {
	t.Parallel()
	src := newPushSource(64, 48)
	gw, browser := net.Pipe()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	served := make(chan error, 1)
	go func() {
		served <- Serve(ctx, gw, src, &recordingRemote{clip: make(chan string, 1)}, wire.Desktop{}, func(error) string { return "" }, nil)
	}()
	defer func() { browser.Close(); <-served }()
	src.mu.Lock()
	src.pending.ClipboardNotice = "the server has no clipboard ✓"
	src.mu.Unlock()
	src.changed <- struct{}{}

	rd := guac.NewReader(browser, guac.Limits{MaxElement: 1 << 22, MaxElements: 16})
	stream, text := "", ""
	for {
		in, err := rd.Read()
		if err != nil {
			t.Fatalf("no clipboard notice before the stream ended: %v", err)
		}
		switch {
		case in.Opcode == "pipe" && len(in.Args) == 3 && in.Args[1] == "text/plain" && in.Args[2] == ClipboardNoticePipe:
			stream = in.Args[0]
		case in.Opcode == "blob" && stream != "" && in.Args[0] == stream:
			b, err := base64.StdEncoding.DecodeString(in.Args[1])
			if err != nil {
				t.Fatal(err)
			}
			text += string(b)
		case in.Opcode == "end" && stream != "" && in.Args[0] == stream:
			if text != "the server has no clipboard ✓" {
				t.Fatalf("notice %q", text)
			}
			return
		}
	}
}
