package rdp

/*
#include "rdp.h"
*/
import "C"

import (
	"errors"
	"strings"
	"unicode/utf16"
	"unsafe"
)

// input is one queued input event for the session thread.
type input struct {
	kind    int
	keysym  uint32
	down    bool
	x, y    int
	buttons uint8
	text    string
}

const (
	inputKey = iota
	inputPointer
	inputClipboard
	inputResize
)

// Keyboard and pointer flags (freerdp/input.h).
const (
	kbdExtended = 0x0100
	kbdRelease  = 0x8000

	ptrHWheel        = 0x0400
	ptrWheel         = 0x0200
	ptrWheelNegative = 0x0100
	ptrMove          = 0x0800
	ptrDown          = 0x8000
	ptrButton1       = 0x1000 // left
	ptrButton2       = 0x2000 // right
	ptrButton3       = 0x4000 // middle
	wheelDelta       = 120    // one notch
)

var errSend = errors.New("rdp: sending input failed")

// apply sends one input event; it runs on the session thread.
func (s *Session) apply(inst *C.freerdp, in input) error {
	ok := true
	switch in.kind {
	case inputKey:
		for _, ev := range s.keys.event(in.keysym, in.down, s.cfg.KeyboardLayout) {
			if ev.unicode {
				// A server without Unicode input refuses the event: the
				// character is lost, not the session.
				if C.kw_unicode(inst, C.uint16_t(ev.flags), C.uint16_t(ev.code)) == 0 {
					s.log.Debug("rdp: the server does not take Unicode input", "char", rune(ev.code))
				}
			} else {
				ok = ok && C.kw_key(inst, C.uint16_t(ev.flags), C.uint16_t(ev.code)) != 0
			}
		}
	case inputPointer:
		w, h := s.Size()
		hwheel := C.kw_has_hwheel(inst) != 0
		for _, ev := range s.mouse.event(in.x, in.y, in.buttons, w, h, hwheel) {
			ok = ok && C.kw_mouse(inst, C.uint16_t(ev.flags), C.uint16_t(ev.x), C.uint16_t(ev.y)) != 0
		}
	case inputClipboard:
		b := encodeClipText(in.text)
		switch C.kw_clip_set(inst, unsafe.Pointer(unsafe.SliceData(b)), C.size_t(len(b))) {
		case C.kwClipFailed:
			ok = false
		case C.kwClipPending:
			s.log.Debug("rdp: clipboard text kept until the server opens its clipboard channel")
			s.fbMu.Lock()
			s.pending.ClipboardNotice = clipboardNotOpen
			s.clipHeld = true
			s.signal()
			s.fbMu.Unlock()
		}
	case inputResize:
		if C.kw_disp_layout(inst, C.uint32_t(in.x), C.uint32_t(in.y)) == 0 {
			s.log.Debug("rdp display control refused a layout", "width", in.x, "height", in.y)
		}
	}
	if !ok {
		return errSend
	}
	return nil
}

// mouseState remembers the last pointer event, to send only changes.
type mouseState struct {
	x, y    int
	buttons uint8
	moved   bool
}

type mouseEvent struct {
	flags uint16
	x, y  int
}

// event turns a Guacamole/RFB button mask into RDP pointer events.
func (m *mouseState) event(x, y int, buttons uint8, w, h int, hwheel bool) []mouseEvent {
	x, y = min(max(x, 0), max(w-1, 0)), min(max(y, 0), max(h-1, 0))
	var evs []mouseEvent
	if !m.moved || x != m.x || y != m.y {
		evs = append(evs, mouseEvent{ptrMove, x, y})
	}
	for _, b := range []struct {
		bit  uint8
		flag uint16
	}{{1, ptrButton1}, {2, ptrButton3}, {4, ptrButton2}} {
		was, is := m.buttons&b.bit != 0, buttons&b.bit != 0
		if was == is {
			continue
		}
		f := b.flag
		if is {
			f |= ptrDown
		}
		evs = append(evs, mouseEvent{f, x, y})
	}
	pressed := buttons &^ m.buttons
	if pressed&8 != 0 {
		evs = append(evs, mouseEvent{ptrWheel | wheelDelta, x, y})
	}
	if pressed&16 != 0 {
		evs = append(evs, mouseEvent{ptrWheel | ptrWheelNegative | (0x200-wheelDelta)&0xFF, x, y})
	}
	if hwheel && pressed&32 != 0 {
		evs = append(evs, mouseEvent{ptrHWheel | ptrWheelNegative | (0x200-wheelDelta)&0xFF, x, y})
	}
	if hwheel && pressed&64 != 0 {
		evs = append(evs, mouseEvent{ptrHWheel | wheelDelta, x, y})
	}
	m.x, m.y, m.buttons, m.moved = x, y, buttons, true
	return evs
}

// encodeClipText is text as CF_UNICODETEXT: UTF-16LE with CRLF line ends
// and a NUL.
func encodeClipText(text string) []byte {
	text = strings.ReplaceAll(strings.ReplaceAll(text, "\r\n", "\n"), "\n", "\r\n")
	u := utf16.Encode([]rune(text))
	b := make([]byte, 0, 2*len(u)+2)
	for _, c := range u {
		b = append(b, byte(c), byte(c>>8))
	}
	return append(b, 0, 0)
}

// decodeClipText reads CF_UNICODETEXT from the server: UTF-16LE up to the
// first NUL, CRLF made LF, at most maxCutText bytes of UTF-8. Invalid
// surrogates become U+FFFD.
func decodeClipText(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := uint16(b[i]) | uint16(b[i+1])<<8
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	text := strings.ReplaceAll(string(utf16.Decode(u)), "\r\n", "\n")
	if len(text) > maxCutText {
		text = strings.ToValidUTF8(text[:maxCutText], "")
	}
	return text
}
