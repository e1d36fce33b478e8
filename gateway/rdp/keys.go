package rdp

import "unicode/utf16"

// layoutUS is the Windows id of the US keyboard layout.
const layoutUS = 0x0409

// scancode is a PC/AT set-1 scan code; extended ones are sent with the
// E0 prefix flag.
type scancode struct {
	code     uint16
	extended bool
}

func sc(code uint16) scancode  { return scancode{code, false} }
func scx(code uint16) scancode { return scancode{code, true} }

// keysymKeys are the keys whose position does not depend on the layout:
// X11 keysym to scan code.
var keysymKeys = map[uint32]scancode{
	0xff08: sc(0x0E),  // BackSpace
	0xff09: sc(0x0F),  // Tab
	0xfe20: sc(0x0F),  // ISO_Left_Tab (shift+Tab)
	0xff0d: sc(0x1C),  // Return
	0xff13: sc(0x45),  // Pause (sent as NumLock with no E1 prefix; rarely needed)
	0xff14: sc(0x46),  // Scroll_Lock
	0xff15: scx(0x37), // Sys_Req
	0xff1b: sc(0x01),  // Escape
	0xff50: scx(0x47), // Home
	0xff51: scx(0x4B), // Left
	0xff52: scx(0x48), // Up
	0xff53: scx(0x4D), // Right
	0xff54: scx(0x50), // Down
	0xff55: scx(0x49), // Page_Up
	0xff56: scx(0x51), // Page_Down
	0xff57: scx(0x4F), // End
	0xff61: scx(0x37), // Print
	0xff63: scx(0x52), // Insert
	0xff67: scx(0x5D), // Menu
	0xff7f: sc(0x45),  // Num_Lock
	0xff8d: scx(0x1C), // KP_Enter
	0xff95: sc(0x47),  // KP_Home
	0xff96: sc(0x4B),  // KP_Left
	0xff97: sc(0x48),  // KP_Up
	0xff98: sc(0x4D),  // KP_Right
	0xff99: sc(0x50),  // KP_Down
	0xff9a: sc(0x49),  // KP_Page_Up
	0xff9b: sc(0x51),  // KP_Page_Down
	0xff9c: sc(0x4F),  // KP_End
	0xff9d: sc(0x4C),  // KP_Begin
	0xff9e: sc(0x52),  // KP_Insert
	0xff9f: sc(0x53),  // KP_Delete
	0xffaa: sc(0x37),  // KP_Multiply
	0xffab: sc(0x4E),  // KP_Add
	0xffad: sc(0x4A),  // KP_Subtract
	0xffae: sc(0x53),  // KP_Decimal
	0xffaf: scx(0x35), // KP_Divide
	0xffb0: sc(0x52),  // KP_0
	0xffb1: sc(0x4F),  // KP_1
	0xffb2: sc(0x50),  // KP_2
	0xffb3: sc(0x51),  // KP_3
	0xffb4: sc(0x4B),  // KP_4
	0xffb5: sc(0x4C),  // KP_5
	0xffb6: sc(0x4D),  // KP_6
	0xffb7: sc(0x47),  // KP_7
	0xffb8: sc(0x48),  // KP_8
	0xffb9: sc(0x49),  // KP_9
	0xffbe: sc(0x3B),  // F1
	0xffbf: sc(0x3C),  // F2
	0xffc0: sc(0x3D),  // F3
	0xffc1: sc(0x3E),  // F4
	0xffc2: sc(0x3F),  // F5
	0xffc3: sc(0x40),  // F6
	0xffc4: sc(0x41),  // F7
	0xffc5: sc(0x42),  // F8
	0xffc6: sc(0x43),  // F9
	0xffc7: sc(0x44),  // F10
	0xffc8: sc(0x57),  // F11
	0xffc9: sc(0x58),  // F12
	0xffe1: sc(0x2A),  // Shift_L
	0xffe2: sc(0x36),  // Shift_R
	0xffe3: sc(0x1D),  // Control_L
	0xffe4: scx(0x1D), // Control_R
	0xffe5: sc(0x3A),  // Caps_Lock
	0xffe7: scx(0x5B), // Meta_L
	0xffe8: scx(0x5C), // Meta_R
	0xffe9: sc(0x38),  // Alt_L
	0xffea: scx(0x38), // Alt_R
	0xffeb: scx(0x5B), // Super_L
	0xffec: scx(0x5C), // Super_R
	0xfe03: scx(0x38), // ISO_Level3_Shift (AltGr)
	0xffff: scx(0x53), // Delete
}

// usChar is a character's key on the US layout and whether Shift is
// needed for it.
type usChar struct {
	key   scancode
	shift bool
}

// usChars maps the printable ASCII characters to US-layout keys.
var usChars = func() map[rune]usChar {
	m := map[rune]usChar{' ': {sc(0x39), false}}
	rows := []struct {
		start       uint16
		plain, shft string
	}{
		{0x02, "1234567890-=", "!@#$%^&*()_+"},
		{0x10, "qwertyuiop[]", "QWERTYUIOP{}"},
		{0x1E, "asdfghjkl;'`", "ASDFGHJKL:\"~"},
		{0x2B, `\zxcvbnm,./`, "|ZXCVBNM<>?"},
	}
	for _, r := range rows {
		for i, c := range r.plain {
			m[c] = usChar{sc(r.start + uint16(i)), false}
		}
		for i, c := range r.shft {
			m[c] = usChar{sc(r.start + uint16(i)), true}
		}
	}
	return m
}()

// keysymRune is the character a keysym types, or -1.
func keysymRune(keysym uint32) rune {
	switch {
	case keysym >= 0x20 && keysym <= 0x7e, keysym >= 0xa0 && keysym <= 0xff:
		return rune(keysym) // Latin-1 keysyms are their code points
	case keysym >= 0x01000100 && keysym <= 0x0110ffff:
		return rune(keysym - 0x01000000)
	}
	return -1
}

// keyEvent is one RDP keyboard event: a scan code, or a UTF-16 unit.
type keyEvent struct {
	unicode bool
	flags   uint16
	code    uint16
}

// keyState tracks the modifiers sent, and how each pressed keysym was
// sent, so its release goes the same way.
type keyState struct {
	shift, ctrl, alt int // keys of each modifier held
	capsLock         bool
	down             map[uint32][]keyEvent
}

// event turns a keysym press or release into RDP keyboard events. Keys
// with a fixed position go as scan codes. With the US layout a character
// goes as its key's scan code; when the Shift held does not give that
// character (a browser or script that sends "$" without Shift), Shift is
// pressed or released around the key and then put back, as a typist
// would. Other characters, and every character of other layouts, go as
// Unicode events.
func (k *keyState) event(keysym uint32, down bool, layout uint32) []keyEvent {
	if k.down == nil {
		k.down = map[uint32][]keyEvent{}
	}
	if !down {
		if evs, ok := k.down[keysym]; ok {
			delete(k.down, keysym)
			k.modifier(keysym, false)
			return release(evs)
		}
	}
	var evs []keyEvent
	if key, ok := keysymKeys[keysym]; ok {
		evs = []keyEvent{scanEvent(key)}
	} else if r := keysymRune(keysym); r >= 0 {
		if c, ok := usChars[r]; ok && layout == layoutUS {
			evs = []keyEvent{scanEvent(c.key)}
			if down && !k.fits(r, c) {
				k.modifier(keysym, down)
				k.down[keysym] = evs // released alone
				return k.withShift(evs[0], k.shift == 0)
			}
		} else {
			for _, u := range utf16.Encode([]rune{r}) {
				evs = append(evs, keyEvent{unicode: true, code: u})
			}
		}
	} else {
		return nil // no key and no character: nothing to send
	}
	k.modifier(keysym, down)
	if down {
		k.down[keysym] = evs
		return evs
	}
	return release(evs)
}

// withShift presses key with Shift pressed (shift) or released around it,
// then restores the Shift state the user holds.
func (k *keyState) withShift(key keyEvent, shift bool) []keyEvent {
	left, right := scanEvent(sc(0x2A)), scanEvent(sc(0x36))
	if shift {
		up := left
		up.flags |= kbdRelease
		return []keyEvent{left, key, up}
	}
	upL, upR := left, right
	upL.flags |= kbdRelease
	upR.flags |= kbdRelease
	return []keyEvent{upL, upR, key, left}
}

// fits reports whether the US key for r types r with the modifiers held.
func (k *keyState) fits(r rune, c usChar) bool {
	if k.ctrl > 0 || k.alt > 0 {
		return true
	}
	want := c.shift
	if (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') {
		want = c.shift != k.capsLock
	}
	return want == (k.shift > 0)
}

func (k *keyState) modifier(keysym uint32, down bool) {
	d := -1
	if down {
		d = 1
	}
	switch keysym {
	case 0xffe1, 0xffe2:
		k.shift = max(k.shift+d, 0)
	case 0xffe3, 0xffe4:
		k.ctrl = max(k.ctrl+d, 0)
	case 0xffe9, 0xffea:
		k.alt = max(k.alt+d, 0)
	case 0xffe5:
		if down {
			k.capsLock = !k.capsLock
		}
	}
}

func scanEvent(key scancode) keyEvent {
	var f uint16
	if key.extended {
		f |= kbdExtended
	}
	return keyEvent{flags: f, code: key.code}
}

// release returns the release events for press events, last pressed
// first released.
func release(evs []keyEvent) []keyEvent {
	out := make([]keyEvent, len(evs))
	for i, ev := range evs {
		ev.flags |= kbdRelease
		out[len(evs)-1-i] = ev
	}
	return out
}
