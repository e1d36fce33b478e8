package display

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"strconv"
	"strings"

	"github.com/keyway-dev/keyway/gateway/guac"
	"github.com/keyway-dev/keyway/gateway/wire"
)

// MaxClipboard bounds clipboard text from the browser, in bytes.
const MaxClipboard = wire.MaxClipboard

// Remote takes a desktop's input: the calls one browser instruction maps
// to, whatever the desktop protocol.
type Remote interface {
	// Key presses (down) or releases an X11 keysym.
	Key(keysym uint32, down bool) error
	// Pointer moves the pointer to x, y with the buttons in mask down:
	// 1 left, 2 middle, 4 right, 8 wheel up, 16 wheel down (RFB's and
	// Guacamole's layout).
	Pointer(x, y int, mask uint8) error
	// CutText sets the remote clipboard.
	CutText(text string) error
	// Resize asks the remote desktop to take the size w×h; desktops that
	// cannot resize ignore it.
	Resize(w, h int) error
}

// ReadInput applies the browser's instructions from stream to remote until
// the browser disconnects (io.EOF), the stream fails or ctx is done. Every
// frame acknowledgement (sync) is offered to acks without blocking.
// limits decide what the browser may do: a view-only session takes no
// input, and clipboard text flows only where allowed.
func ReadInput(ctx context.Context, stream io.Reader, acks chan<- struct{}, limits wire.Desktop, remote Remote) error {
	rd := guac.NewReader(stream, guac.BrowserLimits)
	// clip collects the browser's clipboard stream until its end.
	var clip *clipStream
	for {
		in, err := rd.Read()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		switch in.Opcode {
		case "sync":
			select {
			case acks <- struct{}{}:
			default:
			}
		case "key":
			if limits.ViewOnly || len(in.Args) != 2 {
				continue
			}
			keysym, err := strconv.ParseUint(in.Args[0], 10, 32)
			if err != nil {
				continue
			}
			if err := remote.Key(uint32(keysym), in.Args[1] == "1"); err != nil {
				return err
			}
		case "mouse":
			if limits.ViewOnly || len(in.Args) < 3 {
				continue
			}
			x, errX := strconv.Atoi(in.Args[0])
			y, errY := strconv.Atoi(in.Args[1])
			mask, errM := strconv.ParseUint(in.Args[2], 10, 8)
			if errX != nil || errY != nil || errM != nil {
				continue
			}
			if err := remote.Pointer(x, y, uint8(mask)); err != nil {
				return err
			}
		case "clipboard":
			if !limits.NoClipboardIn && !limits.ViewOnly && len(in.Args) == 2 && strings.HasPrefix(in.Args[1], "text/") {
				clip = &clipStream{id: in.Args[0]}
			}
		case "blob":
			if clip != nil && len(in.Args) == 2 && in.Args[0] == clip.id {
				b, err := base64.StdEncoding.DecodeString(in.Args[1])
				if err != nil || clip.text.Len()+len(b) > MaxClipboard {
					clip = nil // malformed or too large: dropped
					continue
				}
				clip.text.Write(b)
			}
		case "end":
			if clip != nil && len(in.Args) == 1 && in.Args[0] == clip.id {
				text := clip.text.String()
				clip = nil
				if err := remote.CutText(text); err != nil {
					return err
				}
			}
		case "size":
			// The browser's window size: the desktop follows it where
			// the server can resize.
			if limits.ViewOnly || len(in.Args) < 2 {
				continue
			}
			w, errW := strconv.Atoi(in.Args[0])
			h, errH := strconv.Atoi(in.Args[1])
			if errW != nil || errH != nil || w <= 0 || h <= 0 {
				continue
			}
			if err := remote.Resize(w, h); err != nil {
				return err
			}
		case "disconnect":
			return io.EOF
		}
	}
}

// clipStream is a clipboard stream from the browser being received.
type clipStream struct {
	id   string
	text bytes.Buffer
}
