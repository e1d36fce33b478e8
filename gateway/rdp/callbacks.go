package rdp

/*
#include "rdp.h"
*/
import "C"

import (
	"encoding/pem"
	"errors"
	"fmt"
	"image"
	"runtime/cgo"
	"unsafe"
)

// The functions here are called by C (rdp.c) with the session's handle.
// Each copies what it needs from C memory before returning.

func session(h C.uintptr_t) *Session { return cgo.Handle(h).Value().(*Session) }

//export goPaint
func goPaint(h C.uintptr_t, buf unsafe.Pointer, stride C.uint32_t, width, height C.int32_t, rects *C.int32_t, n C.int) {
	s := session(h)
	w, ht, st := int(width), int(height), int(stride)
	if buf == nil || w <= 0 || ht <= 0 || st < 4*w || n <= 0 {
		return
	}
	src := unsafe.Slice((*byte)(buf), st*(ht-1)+4*w)
	rs := unsafe.Slice((*int32)(unsafe.Pointer(rects)), 4*int(n))
	s.fbMu.Lock()
	defer s.fbMu.Unlock()
	if b := s.fb.Bounds(); b.Dx() != w || b.Dy() != ht {
		s.fb = image.NewRGBA(image.Rect(0, 0, w, ht))
		s.pending.Resized = true
	}
	for i := 0; i < int(n); i++ {
		r := image.Rect(int(rs[4*i]), int(rs[4*i+1]), int(rs[4*i]+rs[4*i+2]), int(rs[4*i+1]+rs[4*i+3])).Intersect(s.fb.Bounds())
		if r.Empty() {
			continue
		}
		copyBGRA(s.fb, src, st, r)
		s.addRect(r)
	}
	s.signal()
}

// copyBGRA copies r from a BGRA buffer with the given stride into fb as
// opaque RGBA.
func copyBGRA(fb *image.RGBA, src []byte, stride int, r image.Rectangle) {
	for y := r.Min.Y; y < r.Max.Y; y++ {
		s := src[y*stride+4*r.Min.X : y*stride+4*r.Max.X]
		d := fb.Pix[fb.PixOffset(r.Min.X, y):fb.PixOffset(r.Max.X, y)]
		for i := 0; i < len(s); i += 4 {
			d[i], d[i+1], d[i+2], d[i+3] = s[i+2], s[i+1], s[i], 0xff
		}
	}
}

//export goResized
func goResized(h C.uintptr_t, width, height C.int32_t) {
	s := session(h)
	// First called from PostConnect: the connection is up.
	s.postConnected = true
	s.fbMu.Lock()
	defer s.fbMu.Unlock()
	if b := s.fb.Bounds(); b.Dx() == int(width) && b.Dy() == int(height) {
		return
	}
	s.fb = image.NewRGBA(image.Rect(0, 0, int(width), int(height)))
	s.pending.Resized = true
	s.pending.Rects = nil // a whole-screen paint follows
	s.signal()
}

//export goPointerNew
func goPointerNew(h C.uintptr_t, id C.uint64_t, data unsafe.Pointer, width, height, hx, hy C.uint32_t) {
	s := session(h)
	w, ht := int(width), int(height)
	src := unsafe.Slice((*byte)(data), 4*w*ht)
	img := image.NewRGBA(image.Rect(0, 0, w, ht))
	for i := 0; i < len(src); i += 4 {
		// BGRA, straight alpha, to image.RGBA's premultiplied alpha.
		a := uint32(src[i+3])
		img.Pix[i] = uint8(uint32(src[i+2]) * a / 255)
		img.Pix[i+1] = uint8(uint32(src[i+1]) * a / 255)
		img.Pix[i+2] = uint8(uint32(src[i]) * a / 255)
		img.Pix[i+3] = uint8(a)
	}
	hot := image.Pt(min(int(hx), max(w-1, 0)), min(int(hy), max(ht-1, 0)))
	s.pointers[uint64(id)] = &Cursor{Hotspot: hot, Image: img}
}

//export goPointerFree
func goPointerFree(h C.uintptr_t, id C.uint64_t) {
	delete(session(h).pointers, uint64(id))
}

// pointerHidden and pointerDefault are the ids of the server's "no
// pointer" and "system default pointer".
const (
	pointerHidden  = 0
	pointerDefault = ^uint64(0)
)

//export goPointerSet
func goPointerSet(h C.uintptr_t, id C.uint64_t) {
	s := session(h)
	var c *Cursor
	switch uint64(id) {
	case pointerHidden:
		c = &Cursor{Image: image.NewRGBA(image.Rect(0, 0, 1, 1))}
	case pointerDefault:
		c = defaultCursor()
	default:
		c = s.pointers[uint64(id)]
	}
	if c == nil {
		return
	}
	s.fbMu.Lock()
	defer s.fbMu.Unlock()
	s.pending.Cursor = c
	s.signal()
}

//export goClipText
func goClipText(h C.uintptr_t, data unsafe.Pointer, n C.uint32_t) {
	s := session(h)
	text := decodeClipText(unsafe.Slice((*byte)(data), int(min(n, 4*maxCutText))))
	s.fbMu.Lock()
	defer s.fbMu.Unlock()
	s.pending.CutText, s.pending.HasCutText = text, true
	s.signal()
}

//export goClipReady
func goClipReady(h C.uintptr_t) {
	s := session(h)
	s.clipReady.Store(true)
	s.log.Debug("rdp clipboard channel ready")
	// Text kept back went with the channel's opening: the user, told it
	// was not sent, is told it now was.
	s.fbMu.Lock()
	defer s.fbMu.Unlock()
	if s.clipHeld {
		s.clipHeld = false
		s.pending.ClipboardNotice = clipboardOpened
		s.signal()
	}
}

//export goDispReady
func goDispReady(h C.uintptr_t, monitors, factorA, factorB C.uint32_t) {
	s := session(h)
	s.disp.Store(true)
	s.log.Debug("rdp display control ready", "monitors", uint32(monitors))
}

//export goVerifyCert
func goVerifyCert(h C.uintptr_t, data unsafe.Pointer, n C.size_t, flags C.uint32_t) C.int {
	if session(h).verifyCert(C.GoBytes(data, C.int(min(n, 1<<20)))) {
		return 1
	}
	return 0
}

//export goLogonError
func goLogonError(h C.uintptr_t, data, typ C.uint32_t) {
	s := session(h)
	s.logonInfo = logonInfoText(uint32(data), uint32(typ))
	s.log.Debug("rdp logon info", "data", uint32(data), "type", uint32(typ), "text", s.logonInfo)
}

//export goLog
func goLog(h C.uintptr_t, level C.uint32_t, text *C.char) {
	s := session(h)
	msg := C.GoString(text)
	if len(s.logs) == maxLogLines {
		s.logs = append(s.logs[:0], s.logs[1:]...)
	}
	s.logs = append(s.logs, msg)
	s.log.Debug("freerdp", "level", uint32(level), "msg", msg)
}

func pemDER(b []byte) ([]byte, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return block.Bytes, nil
}

// logonInfoText names the Save Session Info notices FreeRDP passes on.
func logonInfoText(data, typ uint32) string {
	switch data {
	case 0xFFFFFFF9:
		return "the user refused the new connection"
	case 0xFFFFFFFA:
		return "the session was reconnected elsewhere"
	case 0xFFFFFFFB:
		return "the user did not answer the disconnect prompt in time"
	case 0xFFFFFFFC:
		return "the session was disconnected before the user answered"
	case 0xFFFFFFFD:
		return "the user disconnected another session"
	case 0xFFFFFFFE:
		return "the server is busy; try later"
	case 0xFFFFFFFF:
		return "the server asks the user to decide about another session"
	case 0:
		return "" // logon succeeded
	}
	return fmt.Sprintf("logon notice 0x%08X of type %d", data, typ)
}
