package rdp

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestKeysymEvents(t *testing.T) {
	scan := func(code uint16, flags uint16) keyEvent { return keyEvent{flags: flags, code: code} }
	uni := func(code uint16, flags uint16) keyEvent { return keyEvent{unicode: true, flags: flags, code: code} }
	const up = kbdRelease
	tests := []struct {
		name   string
		layout uint32
		held   []uint32 // keysyms pressed first
		keysym uint32
		down   bool
		want   []keyEvent
	}{
		{"letter", layoutUS, nil, 'a', true, []keyEvent{scan(0x1E, 0)}},
		{"capital with shift", layoutUS, []uint32{0xffe1}, 'A', true, []keyEvent{scan(0x1E, 0)}},
		{"capital without shift", layoutUS, nil, 'A', true, []keyEvent{scan(0x2A, 0), scan(0x1E, 0), scan(0x2A, up)}},
		{"lower case with shift held", layoutUS, []uint32{0xffe1}, 'a', true, []keyEvent{scan(0x2A, up), scan(0x36, up), scan(0x1E, 0), scan(0x2A, 0)}},
		{"capital with caps lock", layoutUS, []uint32{0xffe5}, 'A', true, []keyEvent{scan(0x1E, 0)}},
		{"digit", layoutUS, nil, '7', true, []keyEvent{scan(0x08, 0)}},
		{"shifted symbol", layoutUS, []uint32{0xffe2}, '>', true, []keyEvent{scan(0x34, 0)}},
		{"symbol without its shift", layoutUS, nil, '>', true, []keyEvent{scan(0x2A, 0), scan(0x34, 0), scan(0x2A, up)}},
		{"ctrl shortcut", layoutUS, []uint32{0xffe3}, 'c', true, []keyEvent{scan(0x2E, 0)}},
		{"backslash", layoutUS, nil, '\\', true, []keyEvent{scan(0x2B, 0)}},
		{"backtick", layoutUS, nil, '`', true, []keyEvent{scan(0x29, 0)}},
		{"tilde", layoutUS, []uint32{0xffe1}, '~', true, []keyEvent{scan(0x29, 0)}},
		{"space", layoutUS, nil, ' ', true, []keyEvent{scan(0x39, 0)}},
		{"Return", layoutUS, nil, 0xff0d, true, []keyEvent{scan(0x1C, 0)}},
		{"KP_Enter is extended", layoutUS, nil, 0xff8d, true, []keyEvent{scan(0x1C, kbdExtended)}},
		{"Left arrow is extended", layoutUS, nil, 0xff51, true, []keyEvent{scan(0x4B, kbdExtended)}},
		{"Delete", layoutUS, nil, 0xffff, true, []keyEvent{scan(0x53, kbdExtended)}},
		{"F12", layoutUS, nil, 0xffc9, true, []keyEvent{scan(0x58, 0)}},
		{"Control_R", layoutUS, nil, 0xffe4, true, []keyEvent{scan(0x1D, kbdExtended)}},
		{"Super_L", layoutUS, nil, 0xffeb, true, []keyEvent{scan(0x5B, kbdExtended)}},
		{"AltGr", layoutUS, nil, 0xfe03, true, []keyEvent{scan(0x38, kbdExtended)}},
		{"release", layoutUS, nil, 'a', false, []keyEvent{scan(0x1E, up)}},
		{"Latin-1", layoutUS, nil, 0xe9, true, []keyEvent{uni(0xe9, 0)}},
		{"Unicode keysym", layoutUS, nil, 0x010020ac, true, []keyEvent{uni(0x20ac, 0)}},
		{"astral", layoutUS, nil, 0x0101f600, true, []keyEvent{uni(0xd83d, 0), uni(0xde00, 0)}},
		{"other layout: characters as Unicode", 0x0407, nil, 'y', true, []keyEvent{uni('y', 0)}},
		{"other layout: keys as scan codes", 0x0407, nil, 0xff09, true, []keyEvent{scan(0x0F, 0)}},
		{"unknown keysym", layoutUS, nil, 0xfd01, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var k keyState
			for _, h := range tt.held {
				k.event(h, true, tt.layout)
			}
			if got := k.event(tt.keysym, tt.down, tt.layout); !slices.Equal(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// A key's release goes the way its press went, though Shift changed in
// between.
func TestKeyReleaseFollowsPress(t *testing.T) {
	var k keyState
	k.event(0xffe1, true, layoutUS)
	press := k.event('A', true, layoutUS)
	k.event(0xffe1, false, layoutUS)
	rel := k.event('A', false, layoutUS)
	if len(press) != 1 || press[0].unicode || len(rel) != 1 || rel[0].unicode || rel[0].flags&kbdRelease == 0 || rel[0].code != press[0].code {
		t.Fatalf("press %+v, release %+v", press, rel)
	}
	if k.shift != 0 || len(k.down) != 0 {
		t.Fatalf("state left behind: %+v", k)
	}
}

func TestUSCharsComplete(t *testing.T) {
	for r := rune(0x20); r < 0x7f; r++ {
		if _, ok := usChars[r]; !ok {
			t.Errorf("%q has no US key", r)
		}
	}
}

func TestMouseEvents(t *testing.T) {
	var m mouseState
	check := func(x, y int, buttons uint8, want ...mouseEvent) {
		t.Helper()
		if got := m.event(x, y, buttons, 800, 600, true); !slices.Equal(got, want) {
			t.Errorf("(%d,%d,%d): got %+v, want %+v", x, y, buttons, got, want)
		}
	}
	check(10, 20, 0, mouseEvent{ptrMove, 10, 20})
	check(10, 20, 0)
	check(10, 20, 1, mouseEvent{ptrButton1 | ptrDown, 10, 20})
	check(15, 20, 1, mouseEvent{ptrMove, 15, 20})
	check(15, 20, 0, mouseEvent{ptrButton1, 15, 20})
	check(15, 20, 4, mouseEvent{ptrButton2 | ptrDown, 15, 20})
	check(15, 20, 2, mouseEvent{ptrButton3 | ptrDown, 15, 20}, mouseEvent{ptrButton2, 15, 20})
	check(15, 20, 0, mouseEvent{ptrButton3, 15, 20})
	check(15, 20, 8, mouseEvent{ptrWheel | 0x78, 15, 20})
	check(15, 20, 0)
	check(15, 20, 16, mouseEvent{ptrWheel | ptrWheelNegative | 0x88, 15, 20})
	check(15, 20, 64, mouseEvent{ptrHWheel | 0x78, 15, 20})
	check(-5, 9000, 0, mouseEvent{ptrMove, 0, 599})
	if got := m.event(0, 599, 32, 800, 600, false); len(got) != 0 {
		t.Errorf("horizontal wheel without the server's support: %+v", got)
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		st   connectState
		want error
		text string
	}{
		{"NLA logon failure", connectState{code: connLogonFailure}, ErrAuthentication, "rejected the user name or password"},
		{"NLA closed on a bad password", connectState{code: connTransportFailed, nla: true, certSeen: true}, ErrAuthentication, "during NLA"},
		{"locked out", connectState{code: connAccountLockedOut}, ErrAccountLocked, "locked out"},
		{"password expired", connectState{code: connPasswordExpired}, ErrPasswordExpired, "expired"},
		{"must change", connectState{code: connPasswordMustChange}, ErrPasswordMustChange, "must be changed"},
		{"disabled", connectState{code: connAccountDisabled}, ErrAccountDisabled, "disabled"},
		{"no credentials", connectState{code: connNoCredentials}, ErrNoCredentials, "none were given"},
		{"negotiation", connectState{code: connNegoFailed, security: "tls", logs: []string{"Error: HYBRID_REQUIRED_BY_SERVER"}}, ErrNegotiation, "requires NLA"},
		{"TLS", connectState{code: connTLSFailed, certSeen: true}, ErrTLS, "TLS handshake"},
		{"closed after connect", connectState{code: connTransportFailed, certSeen: true, postConnected: true}, ErrServerClosed, "closed"},
		{"denied", connectState{code: errInfoDeniedConnection}, ErrAccessDenied, "denied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := classify(tt.st)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.text) {
				t.Errorf("got %v, want %v with %q", err, tt.want, tt.text)
			}
		})
	}
	pin := classify(connectState{code: connTLSFailed, certErr: &CertificateError{Offered: "SHA256:a", Pinned: "SHA256:b"}})
	var ce *CertificateError
	if !errors.As(pin, &ce) || !strings.Contains(pin.Error(), "SHA256:a") {
		t.Errorf("certificate mismatch: %v", pin)
	}
	for code, want := range map[uint32]error{errInfoLogoffByUser: ErrLoggedOff, errInfoRPCLogoff: ErrLoggedOff, errInfoOtherConnection: ErrDisconnected, errInfoIdleTimeout: ErrDisconnected, 0: ErrServerClosed} {
		if err := classifyEnd(code, ""); !errors.Is(err, want) {
			t.Errorf("end 0x%08X: got %v, want %v", code, err, want)
		}
	}
}

func TestClipText(t *testing.T) {
	for _, text := range []string{"", "plain", "two\nlines\n", "ünïcödé ✓ 😀", "already\r\nwindows"} {
		enc := encodeClipText(text)
		if len(enc)%2 != 0 || enc[len(enc)-1] != 0 || enc[len(enc)-2] != 0 {
			t.Fatalf("%q: not NUL-terminated UTF-16: % x", text, enc)
		}
		if got, want := decodeClipText(enc), strings.ReplaceAll(text, "\r\n", "\n"); got != want {
			t.Errorf("round trip %q: got %q", want, got)
		}
	}
	if got := decodeClipText([]byte{'a', 0, 0, 0, 'b', 0}); got != "a" {
		t.Errorf("text after the NUL kept: %q", got)
	}
	if got := decodeClipText([]byte{0x3d, 0xd8, 'a'}); got != "\uFFFD" {
		t.Errorf("lone surrogate, odd length: %q", got)
	}
}

// FuzzClipText feeds the server's clipboard bytes, the only untrusted
// bytes this package parses in Go.
func FuzzClipText(f *testing.F) {
	f.Add(encodeClipText("hello\nworld"))
	f.Add([]byte{0x3d, 0xd8, 0x00, 0xde})
	f.Add([]byte{0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		s := decodeClipText(b)
		if !utf8.ValidString(s) || len(s) > maxCutText || strings.ContainsRune(s, 0) {
			t.Fatalf("decoded %q", s)
		}
		// A CR of its own may stand before a line end ("\r\r\n"), and
		// is then not told apart from the CR of a CRLF on the way back.
		if got := decodeClipText(encodeClipText(s)); got != s && !strings.Contains(s, "\r") {
			t.Fatalf("re-encoding %q gave %q", s, got)
		}
	})
}
