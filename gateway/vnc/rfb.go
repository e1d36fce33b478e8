// Package vnc is an RFB 3.8 client (RFC 6143) written for the gateway: it
// signs in to a VNC server, keeps the remote framebuffer up to date and
// sends keyboard, pointer and clipboard input. Every length and count the
// server sends is checked against a limit before anything is allocated.
package vnc

import (
	"bufio"
	"crypto/des"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"io"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"unicode"

	"github.com/keyway-dev/keyway/gateway/wire"
)

// Limits on what a server may send.
const (
	// maxPixels bounds the framebuffer's area whatever its shape: 64 Mi
	// pixels, 256 MiB as RGBA, the most the former limit of 8192×8192
	// allowed, so a session needs no more memory than it did. Tall
	// framebuffers fit within it, such as x11vnc -ncache's pixel cache
	// below the screen (twelve 1920×1080 screens are 24 Mi pixels).
	maxPixels = 1 << 26
	// maxDimension bounds either side of the screen shown (the whole
	// framebuffer, or the screen above a pixel cache), as RDP's and the
	// recordings' players do, and of the size asked for with
	// SetDesktopSize.
	maxDimension = 8192
	maxName      = 4096
	maxReason    = 4096
	maxCutText   = 1 << 20
	maxSecTypes  = 64
)

// Security types.
const (
	secNone     = 1
	secVNCAuth  = 2
	secVeNCrypt = 19
)

// Encodings and pseudo-encodings.
const (
	encRaw         int32 = 0
	encCopyRect    int32 = 1
	encDesktopSize int32 = -223
	encCursor      int32 = -239
	encExtDesktop  int32 = -308
)

// maxScreens bounds the screens an ExtendedDesktopSize may list.
const maxScreens = 16

// maxCursor bounds a cursor's width and height.
const maxCursor = 256

var secNames = map[byte]string{1: "None", 2: "VNC Authentication", 5: "RA2", 6: "RA2ne", 16: "Tight", 18: "TLS", 19: "VeNCrypt", 20: "GTK-VNC SASL", 22: "XVP", 30: "Apple Remote Desktop", 113: "MSLogonII"}

// Error kinds callers branch on to tell the user what happened.
var (
	ErrAuthFailed  = errors.New("the VNC server refused the password")
	ErrUnsupported = errors.New("unsupported VNC security")
	ErrProtocol    = errors.New("VNC protocol error")
)

// Config configures a connection.
type Config struct {
	Password string
	// Username is sent by VeNCrypt's Plain sub-types, which ask for one.
	Username string
	// PinnedCert is the server certificate's pin (wire.CertPrefix and its
	// fingerprint) for VeNCrypt X509 sub-types; empty trusts the first
	// certificate seen, reported in Client.CertFingerprint.
	PinnedCert string
	// Shared lets other viewers stay connected.
	Shared bool
	// Depth is the colour depth to ask for: 24 (the default when 0), 16
	// or 8 bits.
	Depth int

	// encodings, when set, replaces the encodings offered (tests use it
	// to exercise one decoder).
	encodings []int32
	// maxPixels, when set, lowers maxPixels (the fuzzer's framebuffers
	// stay small).
	maxPixels int
}

// defaultEncodings are offered in order of preference: Tight, with
// high-quality JPEG for photo-like regions, then ZRLE. Compression level 0
// has the server send Tight's data through zlib without compressing it:
// the gateway sits in the target's network segment, where bytes are
// cheap and the server's CPU is not (it shares the desktop's machine);
// with level 1 a scrolling xterm got about 12 % fewer frames. The browser
// gets the gateway's own compression whatever the server sends.
var defaultEncodings = []int32{encTight, encZRLE, encHextile, encRRE, encCopyRect, encRaw,
	encQualityLevel0 + 8, encCompressionLevel0 + 0}

// Client is a signed-in RFB connection.
type Client struct {
	conn net.Conn
	r    *bufio.Reader
	pf   pixelFormat
	Name string
	// CertFingerprint is the server's TLS certificate pin when the
	// connection runs over VeNCrypt TLS, else empty.
	CertFingerprint string

	wmu sync.Mutex // serialises client messages

	// fb is the remote screen as last decoded; owned by the reading
	// goroutine (ReadUpdate), read by others under fbMu.
	fbMu sync.RWMutex
	fb   *image.RGBA
	// shown is the part of fb a user sees: all of it, or the screen
	// above x11vnc's pixel cache (see visibleArea); guarded by fbMu.
	shown image.Rectangle
	// maxPixels bounds fb's area (maxPixels unless a test lowers it).
	maxPixels int
	// resizable is set once the server announced ExtendedDesktopSize, so
	// it accepts SetDesktopSize for screenID; guarded by fbMu.
	resizable bool
	screenID  uint32
	// rects counts decoded rectangles by encoding, for the session log
	// and tests; guarded by fbMu.
	rects map[string]int

	// The ZRLE zlib stream and Tight's four, which span the whole
	// connection.
	zin    *zrleInput
	zr     io.ReadCloser
	tightZ [4]tightStream
	// tightBuf is scratch for Tight rectangles (see scratch).
	tightBuf []byte

	clipMu sync.Mutex
	clip   clipState
}

// Connect runs the RFB handshake on conn. On error conn is left to the
// caller to close.
func Connect(conn net.Conn, cfg Config) (*Client, error) {
	pf, err := newPixelFormat(cfg.Depth)
	if err != nil {
		return nil, err
	}
	c := &Client{conn: conn, r: bufio.NewReaderSize(conn, 64<<10), pf: pf, maxPixels: maxPixels}
	if cfg.maxPixels > 0 {
		c.maxPixels = cfg.maxPixels
	}
	if err := c.version(); err != nil {
		return nil, err
	}
	if err := c.security(cfg); err != nil {
		return nil, err
	}
	shared := byte(0)
	if cfg.Shared {
		shared = 1
	}
	if _, err := c.conn.Write([]byte{shared}); err != nil { // over TLS once VeNCrypt started it
		return nil, err
	}
	if err := c.serverInit(); err != nil {
		return nil, err
	}
	if err := c.setPixelFormat(); err != nil {
		return nil, err
	}
	encs := cfg.encodings
	if encs == nil {
		encs = defaultEncodings
	}
	if err := c.setEncodings(slices.Concat(encs, []int32{encExtDesktop, encDesktopSize, encCursor, encExtendedClipboard})...); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Client) version() error {
	var v [12]byte
	if _, err := io.ReadFull(c.r, v[:]); err != nil {
		return fmt.Errorf("read server version: %w", err)
	}
	s := string(v[:])
	if !strings.HasPrefix(s, "RFB 003.") || s[11] != '\n' || strings.ContainsFunc(s[8:11], func(r rune) bool { return r < '0' || r > '9' }) {
		return fmt.Errorf("%w: not a VNC server (it sent %q)", ErrProtocol, strings.TrimSpace(s))
	}
	minor := s[8:11]
	if minor < "008" {
		return fmt.Errorf("%w: server speaks RFB 3.%s; 3.8 is required", ErrUnsupported, strings.TrimLeft(minor, "0"))
	}
	_, err := c.conn.Write([]byte("RFB 003.008\n"))
	return err
}

// readReason reads a refusal's reason, for an error message a user
// reads: invalid UTF-8 and control characters are replaced.
func (c *Client) readReason() string {
	var n uint32
	if binary.Read(c.r, binary.BigEndian, &n) != nil || n > maxReason {
		return ""
	}
	b := make([]byte, n)
	io.ReadFull(c.r, b)
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(string(b), "\uFFFD"))
}

func (c *Client) security(cfg Config) error {
	count, err := c.r.ReadByte()
	if err != nil {
		return fmt.Errorf("read security types: %w", err)
	}
	if count == 0 {
		return fmt.Errorf("%w: the server refused the connection: %s", ErrProtocol, c.readReason())
	}
	if count > maxSecTypes {
		return fmt.Errorf("%w: %d security types", ErrProtocol, count)
	}
	types := make([]byte, count)
	if _, err := io.ReadFull(c.r, types); err != nil {
		return err
	}
	var names []string
	for _, t := range types {
		names = append(names, cmpName(secNames[t], fmt.Sprintf("type %d", t)))
	}
	// VeNCrypt first: it can carry everything over TLS.
	chosen := byte(0)
	switch {
	case contains(types, secVeNCrypt):
		chosen = secVeNCrypt
	case cfg.PinnedCert != "":
		// Only VeNCrypt's X509 sub-types check the pinned certificate:
		// falling back would let whoever took TLS away (the server's
		// admin, or anyone in the path) have the password.
		return &UnverifiedPinError{Pinned: strings.TrimPrefix(cfg.PinnedCert, wire.CertPrefix), Offered: strings.Join(names, ", ")}
	case contains(types, secVNCAuth) && cfg.Password != "":
		chosen = secVNCAuth
	case contains(types, secNone):
		chosen = secNone
	}
	if chosen == 0 {
		hint := ""
		if cfg.Password == "" && contains(types, secVNCAuth) {
			hint = " (it asks for a password and none is stored)"
		}
		return fmt.Errorf("%w: the server offers %s%s", ErrUnsupported, strings.Join(names, ", "), hint)
	}
	if _, err := c.conn.Write([]byte{chosen}); err != nil {
		return err
	}
	if chosen == secVeNCrypt {
		return c.vencrypt(cfg)
	}
	return c.plainSecurity(chosen, cfg.Password)
}

// plainSecurity completes security type None or VNC Authentication once
// chosen.
func (c *Client) plainSecurity(chosen byte, password string) error {
	if chosen == secVNCAuth {
		return c.vncAuth(password)
	}
	return c.securityResult()
}

// securityResult reads whether the server accepted the client.
func (c *Client) securityResult() error {
	var result uint32
	if err := binary.Read(c.r, binary.BigEndian, &result); err != nil {
		return fmt.Errorf("read security result: %w", err)
	}
	if result != 0 {
		if reason := c.readReason(); reason != "" {
			return fmt.Errorf("%w (%s)", ErrAuthFailed, reason)
		}
		return ErrAuthFailed
	}
	return nil
}

func contains(b []byte, v byte) bool {
	for _, x := range b {
		if x == v {
			return true
		}
	}
	return false
}

// vncAuthResponse encrypts the challenge with DES keyed by the password's
// first 8 bytes, each bit-reversed, as RFB's VNC Authentication requires.
func vncAuthResponse(password string, challenge [16]byte) ([16]byte, error) {
	var key [8]byte
	copy(key[:], password)
	for i, b := range key {
		var r byte
		for j := range 8 {
			if b&(1<<j) != 0 {
				r |= 1 << (7 - j)
			}
		}
		key[i] = r
	}
	block, err := des.NewCipher(key[:])
	if err != nil {
		return [16]byte{}, err
	}
	var out [16]byte
	block.Encrypt(out[:8], challenge[:8])
	block.Encrypt(out[8:], challenge[8:])
	return out, nil
}

func (c *Client) serverInit() error {
	var hdr [24]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		return fmt.Errorf("read server init: %w", err)
	}
	w, h := int(binary.BigEndian.Uint16(hdr[0:])), int(binary.BigEndian.Uint16(hdr[2:]))
	if err := c.checkSize(w, h); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(hdr[20:])
	if n > maxName {
		return fmt.Errorf("%w: desktop name of %d bytes", ErrProtocol, n)
	}
	name := make([]byte, n)
	if _, err := io.ReadFull(c.r, name); err != nil {
		return err
	}
	c.Name = string(name)
	c.setFramebuffer(w, h)
	return nil
}

// checkSize refuses a framebuffer beyond the limits before it is
// allocated.
func (c *Client) checkSize(w, h int) error {
	if w == 0 || h == 0 {
		return fmt.Errorf("%w: screen size %dx%d", ErrProtocol, w, h)
	}
	if w*h > c.maxPixels {
		return fmt.Errorf("%w: the screen of %dx%d pixels is larger than the %d Mi pixels the gateway holds (with x11vnc, a smaller -ncache helps)", ErrProtocol, w, h, c.maxPixels>>20)
	}
	if s := visibleArea(w, h); s.Dx() > maxDimension || s.Dy() > maxDimension {
		return fmt.Errorf("%w: the screen of %dx%d pixels is larger than the %d on a side the gateway shows", ErrProtocol, s.Dx(), s.Dy(), maxDimension)
	}
	return nil
}

// setFramebuffer makes a new w×h framebuffer, checked by checkSize; the
// caller holds fbMu or owns the client alone.
func (c *Client) setFramebuffer(w, h int) {
	c.fb = image.NewRGBA(image.Rect(0, 0, w, h))
	c.shown = visibleArea(w, h)
}

// setPixelFormat asks for little-endian true colour of the chosen depth;
// at 24 bits each pixel arrives as B, G, R, unused.
func (c *Client) setPixelFormat() error {
	msg := make([]byte, 4, 20)
	return c.write(append(msg, c.pf.wire[:]...))
}

func (c *Client) setEncodings(encs ...int32) error {
	msg := make([]byte, 4+4*len(encs))
	msg[0] = 2
	binary.BigEndian.PutUint16(msg[2:], uint16(len(encs)))
	for i, e := range encs {
		binary.BigEndian.PutUint32(msg[4+4*i:], uint32(e))
	}
	return c.write(msg)
}

func (c *Client) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.conn.Write(b)
	return err
}

// RectCounts returns how many rectangles each encoding has carried.
func (c *Client) RectCounts() map[string]int {
	c.fbMu.RLock()
	defer c.fbMu.RUnlock()
	return maps.Clone(c.rects)
}

// counted notes one rectangle of an encoding; the caller holds fbMu.
func (c *Client) counted(enc string) {
	if c.rects == nil {
		c.rects = map[string]int{}
	}
	c.rects[enc]++
}

// Size returns the size of the screen a user sees: the framebuffer's,
// or the screen's above a pixel cache.
func (c *Client) Size() (int, int) {
	c.fbMu.RLock()
	defer c.fbMu.RUnlock()
	return c.shown.Dx(), c.shown.Dy()
}

// FramebufferSize returns the size of the whole framebuffer, a pixel
// cache included.
func (c *Client) FramebufferSize() (int, int) {
	c.fbMu.RLock()
	defer c.fbMu.RUnlock()
	b := c.fb.Bounds()
	return b.Dx(), b.Dy()
}

// RequestUpdate asks for the screen (incremental: only what changed).
// It asks for the whole framebuffer, a pixel cache included: the cache is
// only of use when it is kept up to date, and its pixels stay in the
// gateway.
func (c *Client) RequestUpdate(incremental bool) error {
	w, h := c.FramebufferSize()
	msg := make([]byte, 10)
	msg[0] = 3
	if incremental {
		msg[1] = 1
	}
	binary.BigEndian.PutUint16(msg[6:], uint16(w))
	binary.BigEndian.PutUint16(msg[8:], uint16(h))
	return c.write(msg)
}

// SetDesktopSize asks the server to resize its screen to w×h. It reports
// false, sending nothing, when the server does not support resizing.
func (c *Client) SetDesktopSize(w, h int) (bool, error) {
	c.fbMu.RLock()
	// A server keeping a pixel cache below its screen is not asked to
	// take the browser's size: it would drop the cache, or refuse.
	ok, id := c.resizable && c.shown == c.fb.Bounds(), c.screenID
	c.fbMu.RUnlock()
	if !ok {
		return false, nil
	}
	w, h = max(64, min(w, maxDimension)), max(64, min(h, maxDimension))
	msg := make([]byte, 24)
	msg[0] = 251
	binary.BigEndian.PutUint16(msg[2:], uint16(w))
	binary.BigEndian.PutUint16(msg[4:], uint16(h))
	msg[6] = 1 // one screen
	binary.BigEndian.PutUint32(msg[8:], id)
	binary.BigEndian.PutUint16(msg[16:], uint16(w))
	binary.BigEndian.PutUint16(msg[18:], uint16(h))
	return true, c.write(msg)
}

// Key sends a key press or release of an X11 keysym.
func (c *Client) Key(keysym uint32, down bool) error {
	msg := make([]byte, 8)
	msg[0] = 4
	if down {
		msg[1] = 1
	}
	binary.BigEndian.PutUint32(msg[4:], keysym)
	return c.write(msg)
}

// Pointer sends the pointer position and button mask (bit 0 left, 1
// middle, 2 right, 3 and 4 wheel up and down).
func (c *Client) Pointer(x, y int, buttons uint8) error {
	w, h := c.Size()
	x, y = max(0, min(x, w-1)), max(0, min(y, h-1))
	msg := []byte{5, buttons, 0, 0, 0, 0}
	binary.BigEndian.PutUint16(msg[2:], uint16(x))
	binary.BigEndian.PutUint16(msg[4:], uint16(y))
	return c.write(msg)
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }
