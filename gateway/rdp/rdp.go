// Package rdp is the gateway's RDP client: a narrow Go API over FreeRDP 2
// (libfreerdp2, libfreerdp-client2, libwinpr2) and the only cgo in the
// project.
//
// Connect signs in and returns a Session, which owns one FreeRDP instance
// and one goroutine locked to its OS thread that runs FreeRDP's event loop.
// The remote screen is kept in a Go-owned RGBA image: FreeRDP paints into
// its own buffer, and at the end of each paint the changed regions are
// copied out at once (BGRA to RGBA) under a mutex; no C pointer outlives a
// callback. Changed is signalled when there is something to Take (dirty
// rectangles, a resize, a new pointer image, clipboard text), and Snapshot
// copies a region of the image:
//
//	s, err := rdp.Connect(ctx, rdp.Config{Host: "10.0.0.5", Port: 3389, Username: "u", Password: pw})
//	defer s.Close()
//	for {
//		select {
//		case <-s.Changed():
//			u := s.Take()
//			for _, r := range u.Rects { send(s.Snapshot(r), r.Min) }
//		case <-s.Done():
//			return s.Err()
//		}
//	}
//
// Input (Key, Pointer, CutText, Resize) may come from any goroutine: it is
// queued and the loop is woken through a WinPR event in its wait set, so
// FreeRDP is only ever called from the session's thread. C calls back into
// Go with a runtime/cgo.Handle, never a Go pointer.
//
// Go dials the server (so the context bounds the whole connection: a
// cancel shuts the connections down, which also ends FreeRDP's blocking
// reads). FreeRDP reaches it through a Unix socket in the session's
// private directory, its "/path" form of the host name, and each
// connection it makes there is forwarded to a fresh TCP connection (see
// pipe). FreeRDP then uses the path where it would use the name: in the
// TLS SNI and the NLA service name (TERMSRV/path), which NTLM servers do
// not check; Kerberos is not supported.
//
// The server certificate is checked by its SHA-256 pin (Config.CertFingerprint,
// in gateway/wire's form) through FreeRDP's external certificate
// management, so every certificate is checked, CA-signed or not: an empty
// pin accepts the first certificate and reports it in
// Session.CertFingerprint. FreeRDP's own store (known_hosts2) is never
// used, and its configuration directory is a private temporary one,
// removed when the session ends.
//
// Errors are typed: *Error carries a sentinel (ErrAuthentication,
// ErrAccountLocked, ErrNegotiation, ErrRefused, ErrLoggedOff, ...) for
// errors.Is, FreeRDP's code and its words; *CertificateError carries the
// offered and pinned fingerprints.
//
// FreeRDP logs (WLog) through one process-wide logger: this package keeps
// its warnings and errors off the console and routes them to the Logger of
// the session whose thread wrote them, at debug level (those of FreeRDP's
// channel threads are dropped), unless WLOG_LEVEL is set in the
// environment, which leaves WLog as FreeRDP configures it. A session also
// keeps the last few, to name a negotiation failure.
//
// Supported: NLA, TLS and standard RDP security (only when asked for:
// "any" means NLA or TLS); the legacy (non-GFX)
// drawing orders decoded by FreeRDP's software GDI; cliprdr text both
// ways; display control (disp) resizes and server desktop resizes; pointer
// images. Not (yet): the graphics pipeline (RDPGFX, H.264), audio, drives,
// RemoteApp, RD Gateway, server redirection, Kerberos, and scan codes for
// layouts other than US (their characters go as Unicode events, which
// shortcuts like Ctrl+C on such layouts do not survive).
package rdp

/*
#cgo pkg-config: freerdp2 freerdp-client2 winpr2
#include <stdlib.h>
#include "rdp.h"
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"image"
	"image/draw"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/cgo"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/keyway-dev/keyway/gateway/wire"
)

// Limits.
const (
	// maxDimension bounds the desktop size asked for or accepted.
	maxDimension = 8192
	// minDimension is the smallest size the display control channel takes.
	minDimension = 200
	// maxCutText bounds clipboard text either way, in bytes of UTF-8.
	maxCutText = 1 << 20
	// maxQueuedInput bounds input waiting for the session thread; pointer
	// moves are coalesced before this is reached.
	maxQueuedInput = 4096
	// maxPendingRects bounds the dirty rectangles kept until Take; more
	// are merged into their union.
	maxPendingRects = 256
	// defaultConnectTimeout bounds the connection when ctx has no deadline.
	defaultConnectTimeout = 15 * time.Second
)

// Config configures Connect.
type Config struct {
	Host string
	// Port defaults to 3389.
	Port                       int
	Username, Password, Domain string
	// Security is "any" (the default: NLA or TLS, whichever the server
	// picks), "nla", "tls" or "rdp" (standard RDP security, which cannot
	// verify the server: used only when named, and never with a pinned
	// certificate).
	Security string
	// Width and Height are the initial desktop size, 1024x768 by default.
	Width, Height int
	// ColorDepth is 16, 24 or 32 (the default).
	ColorDepth int
	// CertFingerprint is the pinned SHA-256 fingerprint of the server's
	// certificate ("SHA256:…", optionally with wire.CertPrefix); empty
	// accepts the first one, reported by Session.CertFingerprint.
	CertFingerprint string
	// IgnoreCertificate accepts any certificate (tests, lab servers).
	IgnoreCertificate bool
	// Clipboard loads the clipboard channel (text both ways).
	Clipboard bool
	// KeyboardLayout is a Windows keyboard layout id; 0x0409 (US) by
	// default. Keys are sent as scan codes for the US layout and as
	// Unicode for characters without a key.
	KeyboardLayout uint32
	Logger         *slog.Logger
}

// LogValue keeps the password out of logs.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("host", c.Host), slog.Int("port", c.Port),
		slog.String("user", c.Username), slog.String("domain", c.Domain),
		slog.String("security", c.Security), slog.Bool("password", c.Password != ""))
}

func (c *Config) defaults() error {
	if c.Host == "" {
		return errors.New("rdp: no host")
	}
	if c.Port == 0 {
		c.Port = 3389
	}
	if c.Port < 0 || c.Port > 65535 {
		return fmt.Errorf("rdp: port %d out of range", c.Port)
	}
	if c.Width == 0 && c.Height == 0 {
		c.Width, c.Height = 1024, 768
	}
	if c.Width < minDimension || c.Height < minDimension || c.Width > maxDimension || c.Height > maxDimension {
		return fmt.Errorf("rdp: desktop size %dx%d out of range", c.Width, c.Height)
	}
	switch c.ColorDepth {
	case 0:
		c.ColorDepth = 32
	case 16, 24, 32:
	default:
		return fmt.Errorf("rdp: colour depth %d: choose 16, 24 or 32", c.ColorDepth)
	}
	if c.Security == "" {
		c.Security = "any"
	}
	if _, ok := securities[c.Security]; !ok {
		return fmt.Errorf("rdp: security %q: choose any, nla, tls or rdp", c.Security)
	}
	if c.Security == "rdp" && c.CertFingerprint != "" && !c.IgnoreCertificate {
		// A pin says the server proved itself with TLS before: going on
		// without checking it is what an attacker in the path would ask.
		return &Error{Kind: ErrPinnedNeedsTLS, Detail: "the resource is set to standard RDP security"}
	}
	if c.KeyboardLayout == 0 {
		c.KeyboardLayout = layoutUS
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

var securities = map[string]C.int{"any": C.kwSecAny, "nla": C.kwSecNLA, "tls": C.kwSecTLS, "rdp": C.kwSecRDP}

// Cursor is the remote pointer's image and hotspot. An image with no
// pixels set hides the pointer.
type Cursor struct {
	Hotspot image.Point
	Image   *image.RGBA
}

// Update says what changed since the last Take.
type Update struct {
	// Rects are regions whose pixels changed.
	Rects []image.Rectangle
	// Resized reports a new desktop size; Rects then cover all of it.
	Resized bool
	// Cursor is a new pointer image, nil if unchanged.
	Cursor *Cursor
	// CutText is clipboard text from the server, when HasCutText.
	CutText    string
	HasCutText bool
	// ClipboardNotice says, for the user, why text given to CutText has
	// not reached the server: its clipboard channel is not open.
	ClipboardNotice string
}

// Session is a connected RDP session.
type Session struct {
	cfg    Config
	log    *slog.Logger
	addr   string
	handle cgo.Handle

	// mu guards inst against freeing while another goroutine wakes or
	// aborts it, and the input queue.
	mu      sync.Mutex
	inst    *C.freerdp
	queue   []input
	closing bool
	// pipe carries FreeRDP's connections to the server. Shutting it down
	// unblocks FreeRDP's blocking reads during the connection sequence,
	// which its abort event does not.
	pipe *pipe

	fbMu    sync.Mutex
	fb      *image.RGBA
	pending Update
	// clipHeld: clipboard text waits for the server's clipboard channel
	// and the user was told so.
	clipHeld bool
	changed  chan struct{}

	// certFP is guarded by fbMu: a server redirection would check a
	// certificate again.
	certFP string
	// Written on the session thread during connect, read after ready.
	certErr       *CertificateError
	certChecks    int
	postConnected bool
	logs          []string // FreeRDP's recent warnings and errors
	logonInfo     string

	// Owned by the session thread.
	pointers map[uint64]*Cursor
	keys     keyState
	mouse    mouseState

	disp      atomic.Bool
	clipReady atomic.Bool // the server opened its clipboard channel
	configDir string

	done chan struct{}
	err  error // why the session ended; set before done is closed
}

// maxLogLines is how many of FreeRDP's warnings a session keeps to explain
// a failure.
const maxLogLines = 16

var logSetup sync.Once

// Connect connects and signs in. ctx bounds the connection (and cancels
// it), not the session.
func Connect(ctx context.Context, cfg Config) (*Session, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if _, ok := os.LookupEnv("WLOG_LEVEL"); !ok {
		logSetup.Do(func() { C.kw_log_setup() })
	}
	dir, err := os.MkdirTemp("", "keyway-rdp-")
	if err != nil {
		return nil, fmt.Errorf("rdp: config dir: %w", err)
	}
	s := &Session{
		cfg:       cfg,
		log:       cfg.Logger.With("target", net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port))),
		addr:      net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)),
		changed:   make(chan struct{}, 1),
		pointers:  map[uint64]*Cursor{},
		configDir: dir,
		done:      make(chan struct{}),
		fb:        image.NewRGBA(image.Rect(0, 0, cfg.Width, cfg.Height)),
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultConnectTimeout)
		defer cancel()
	}
	conn, err := dial(ctx, s.addr)
	if err == nil {
		s.pipe, err = newPipe(dir, s.addr, conn)
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("rdp connect %s: %w", s.addr, err)
	}
	s.handle = cgo.NewHandle(s)
	ready := make(chan error, 1)
	go s.run(ready)
	stop := context.AfterFunc(ctx, s.abort)
	err = <-ready
	stop()
	if err == nil && ctx.Err() != nil { // connected as it was cancelled
		s.Close()
		err = ctx.Err()
	}
	if err != nil {
		<-s.done
		if ctx.Err() != nil {
			err = ctx.Err() // what FreeRDP saw of it is the abort
		}
		return nil, fmt.Errorf("rdp connect %s: %w", s.addr, err)
	}
	s.log.Debug("rdp connected", "cert", s.CertFingerprint())
	return s, nil
}

// run owns the FreeRDP instance: it connects, reports on ready, runs the
// event loop and frees everything, on one locked OS thread. The thread is
// not unlocked, so it ends with the goroutine and takes FreeRDP's
// thread-local state with it.
func (s *Session) run(ready chan<- error) {
	runtime.LockOSThread()
	defer close(s.done)
	defer os.RemoveAll(s.configDir)
	defer s.pipe.close()
	defer s.handle.Delete()
	C.kw_thread_handle(C.uintptr_t(s.handle))
	defer C.kw_thread_handle(0)

	inst := C.kw_new(C.uintptr_t(s.handle))
	if inst == nil {
		s.err = errors.New("rdp: cannot create a FreeRDP instance")
		ready <- s.err
		return
	}
	s.mu.Lock()
	s.inst = inst
	s.mu.Unlock()
	defer s.free()

	if err := s.configure(inst); err != nil {
		s.err = err
		ready <- err
		return
	}
	if C.kw_connect(inst) == 0 {
		s.err = s.connectError(uint32(C.kw_last_error(inst)), uint32(C.kw_selected_protocol(inst)))
		ready <- s.err
		return
	}
	ready <- nil
	s.err = s.loop(inst)
	s.log.Debug("rdp session ended", "err", s.err)
}

// free frees the instance; no callback can come after it.
func (s *Session) free() {
	s.mu.Lock()
	inst := s.inst
	s.inst = nil
	s.closing = true
	s.queue = nil
	s.mu.Unlock()
	C.kw_free(inst)
}

func (s *Session) configure(inst *C.freerdp) error {
	var strs []*C.char
	str := func(v string) *C.char {
		p := C.CString(v)
		strs = append(strs, p)
		return p
	}
	defer func() {
		for _, p := range strs {
			C.free(unsafe.Pointer(p))
		}
	}()
	cfg := C.kwConfig{
		host:           str(s.pipe.path),
		port:           C.int(s.cfg.Port),
		username:       str(s.cfg.Username),
		password:       str(s.cfg.Password),
		domain:         str(s.cfg.Domain),
		configDir:      str(s.configDir),
		security:       securities[s.cfg.Security],
		width:          C.int(s.cfg.Width),
		height:         C.int(s.cfg.Height),
		depth:          C.int(s.cfg.ColorDepth),
		keyboardLayout: C.uint32_t(s.cfg.KeyboardLayout),
	}
	if s.cfg.Clipboard {
		cfg.clipboard = 1
	}
	if C.kw_configure(inst, &cfg) == 0 {
		return errors.New("rdp: FreeRDP refused the settings")
	}
	return nil
}

// loop runs FreeRDP's event loop until the connection ends or Close.
func (s *Session) loop(inst *C.freerdp) error {
	for {
		ok := C.kw_wait(inst, 1000) != 0
		C.kw_clear_wake(inst)
		s.mu.Lock()
		queue, closing := s.queue, s.closing
		s.queue = nil
		s.mu.Unlock()
		if closing {
			return ErrClosed
		}
		if !ok {
			return s.endError(uint32(C.kw_last_error(inst)))
		}
		for _, in := range queue {
			if err := s.apply(inst, in); err != nil {
				return err
			}
		}
	}
}

// abort cancels a connection under way: FreeRDP's abort event ends its
// waits, and shutting the socket down ends its blocking reads.
func (s *Session) abort() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inst != nil {
		C.kw_abort(s.inst)
	}
	s.pipe.shutdown()
}

// dial connects to addr within ctx (defaultConnectTimeout without a
// deadline).
func dial(ctx context.Context, addr string) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: defaultConnectTimeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, dialError(err)
	}
	return c.(*net.TCPConn), nil
}

// post queues input for the session thread and wakes it.
func (s *Session) post(in input) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing || s.inst == nil {
		return ErrClosed
	}
	if n := len(s.queue); in.kind == inputPointer && n > 0 && s.queue[n-1].kind == inputPointer && s.queue[n-1].buttons == in.buttons {
		s.queue[n-1] = in // a move only: the latest position will do
	} else {
		if n >= maxQueuedInput {
			return errors.New("rdp: input queue full")
		}
		s.queue = append(s.queue, in)
	}
	C.kw_wake(s.inst)
	return nil
}

// Size returns the desktop size.
func (s *Session) Size() (w, h int) {
	s.fbMu.Lock()
	defer s.fbMu.Unlock()
	b := s.fb.Bounds()
	return b.Dx(), b.Dy()
}

// CertFingerprint is the SHA-256 fingerprint of the certificate the server
// presented ("SHA256:…"), to pin on first use; empty for standard RDP
// security, which has none.
func (s *Session) CertFingerprint() string {
	s.fbMu.Lock()
	defer s.fbMu.Unlock()
	return s.certFP
}

// Changed is signalled when there is something to Take.
func (s *Session) Changed() <-chan struct{} { return s.changed }

// Take returns what changed since the last Take.
func (s *Session) Take() Update {
	s.fbMu.Lock()
	defer s.fbMu.Unlock()
	u := s.pending
	s.pending = Update{}
	return u
}

// Snapshot returns a copy of the desktop region r.
func (s *Session) Snapshot(r image.Rectangle) *image.RGBA {
	s.fbMu.Lock()
	defer s.fbMu.Unlock()
	r = r.Intersect(s.fb.Bounds())
	out := image.NewRGBA(image.Rect(0, 0, r.Dx(), r.Dy()))
	draw.Draw(out, out.Bounds(), s.fb, r.Min, draw.Src)
	return out
}

// ReadRegion copies the desktop region r into dst at the same
// coordinates, without allocating: the display pipeline reads changed
// regions this way at every frame.
func (s *Session) ReadRegion(dst *image.RGBA, r image.Rectangle) {
	s.fbMu.Lock()
	defer s.fbMu.Unlock()
	draw.Draw(dst, r, s.fb, r.Min, draw.Src)
}

// Key presses (down) or releases an X11 keysym.
func (s *Session) Key(keysym uint32, down bool) error {
	return s.post(input{kind: inputKey, keysym: keysym, down: down})
}

// Pointer moves the pointer to x, y with buttons pressed: a Guacamole/RFB
// mask, 1 left, 2 middle, 4 right, 8 wheel up, 16 wheel down, 32 wheel
// left, 64 wheel right (wheel bits count when they turn on).
func (s *Session) Pointer(x, y int, buttons uint8) error {
	return s.post(input{kind: inputPointer, x: x, y: y, buttons: buttons})
}

// CutText offers text as the local clipboard to the server. It needs
// Config.Clipboard. Until the server opens its clipboard channel (sends
// Monitor Ready) the text is kept, and sent if it does; meanwhile an
// Update's ClipboardNotice says so. Servers without a clipboard never do.
func (s *Session) CutText(text string) error {
	if !s.cfg.Clipboard {
		return errors.New("rdp: the clipboard channel is off")
	}
	if len(text) > maxCutText {
		return fmt.Errorf("rdp: clipboard text of %d bytes is over %d", len(text), maxCutText)
	}
	return s.post(input{kind: inputClipboard, text: text})
}

// ClipboardReady reports whether the server has opened its clipboard
// channel, so that CutText reaches it.
func (s *Session) ClipboardReady() bool { return s.clipReady.Load() }

// clipboardNotOpen is the ClipboardNotice for text kept back.
const clipboardNotOpen = "The remote desktop has not opened its clipboard, so the text was not sent; it will be if the server opens its clipboard later. " +
	"Some RDP servers have no clipboard at all: freerdp-shadow-cli, for one."

// clipboardOpened is the ClipboardNotice once text kept back was sent.
const clipboardOpened = "The remote desktop has opened its clipboard now; the text you sent earlier went to it."

// Resize asks the server for a new desktop size over the display control
// channel and reports whether the server has that channel; without it the
// call does nothing. The new size arrives as an Update with Resized.
func (s *Session) Resize(w, h int) (bool, error) {
	if w < minDimension || h < minDimension || w > maxDimension || h > maxDimension {
		return false, fmt.Errorf("rdp: desktop size %dx%d out of range", w, h)
	}
	if !s.disp.Load() {
		return false, nil
	}
	return true, s.post(input{kind: inputResize, x: w &^ 1, y: h}) // widths must be even
}

// Done is closed when the session has ended and everything is freed.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err says why the session ended (ErrClosed after Close); nil before Done.
func (s *Session) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// Close ends the session, frees every FreeRDP object and waits.
func (s *Session) Close() error {
	s.mu.Lock()
	if !s.closing && s.inst != nil {
		s.closing = true
		C.kw_wake(s.inst)
	}
	s.mu.Unlock()
	<-s.done
	return nil
}

// signal tells the consumer there is something to Take; fbMu is held.
func (s *Session) signal() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

func (s *Session) addRect(r image.Rectangle) {
	if r.Empty() {
		return
	}
	if len(s.pending.Rects) >= maxPendingRects {
		u := r
		for _, p := range s.pending.Rects {
			u = u.Union(p)
		}
		s.pending.Rects = append(s.pending.Rects[:0], u)
		return
	}
	s.pending.Rects = append(s.pending.Rects, r)
}

// verifyCert checks the server certificate (PEM) against the pin.
func (s *Session) verifyCert(pem []byte) bool {
	s.certChecks++
	if s.certChecks > 1 && !s.postConnected {
		// FreeRDP retries a connection whose transport failed, even in
		// the middle of NLA: that would try a rejected password again.
		s.log.Debug("rdp: refusing FreeRDP's automatic reconnection")
		return false
	}
	der, err := pemDER(pem)
	if err != nil {
		s.log.Debug("rdp: unreadable server certificate", "err", err)
		return false
	}
	fp := wire.CertFingerprint(der)
	s.fbMu.Lock()
	s.certFP = fp
	s.fbMu.Unlock()
	if s.cfg.IgnoreCertificate {
		return true
	}
	pinned := strings.TrimPrefix(s.cfg.CertFingerprint, wire.CertPrefix)
	if pinned != "" && pinned != fp {
		s.certErr = &CertificateError{Offered: fp, Pinned: pinned}
		return false
	}
	return true
}
