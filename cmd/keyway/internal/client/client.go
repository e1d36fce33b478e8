// Package client is the keyway command's connection to a portal: API
// requests and tunnel streams, all multiplexed over one TLS connection with
// HTTP/2 (one CONNECT stream per local connection), or, when the way to the
// portal does not pass HTTP/2, one TLS connection per stream with HTTP/1.1
// CONNECT.
package client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"github.com/keyway-dev/keyway/cmd/keyway/internal/config"
)

// Timing of the connection to the portal.
const (
	// WaitForPortal is how long a new stream or request waits for a live
	// connection before it fails, unless Options.Wait says otherwise.
	WaitForPortal = 10 * time.Second
	minBackoff    = 200 * time.Millisecond
	maxBackoff    = 5 * time.Second
	dialTimeout   = 10 * time.Second
	// openTimeout bounds the wait for the portal's answer to a CONNECT:
	// the portal's gateway dials the target meanwhile.
	openTimeout = 45 * time.Second
	// pingAfter and pingTimeout find a connection that died silently (a
	// dropped Wi-Fi) so it is made again.
	pingAfter   = 30 * time.Second
	pingTimeout = 15 * time.Second
	// streamWindow is how much the portal may send on one stream before
	// keyway has passed it on (x/net's default is 4 MiB). All streams
	// share one connection read in order, so a bulk stream's window in
	// flight delays the small replies of the others by its time on the
	// wire: 8-10 ms beside a bulk stream at the defaults, about 2 ms at
	// 256 KiB each way, for no measurable loss of throughput
	// (docs/benchmarks.md).
	streamWindow = 256 << 10
)

// Bounds on what the portal sends back, checked before keeping it.
const (
	maxErrorBody = 16 << 10
	maxEndReason = 1024
	maxAPIBody   = 4 << 20
)

// Auth is how requests prove who sends them: a bearer credential and, for
// a device credential, the device key that signs each request.
type Auth struct {
	Bearer config.Credential
	Key    ed25519.PrivateKey // nil for API tokens and unauthenticated requests
}

// proofMessage is what the Keyway-Proof signature covers.
func proofMessage(ts, method, target string) []byte {
	return []byte("keyway-proof\n" + ts + "\n" + method + "\n" + target)
}

func (a Auth) set(h http.Header, method, target string, now time.Time) {
	if a.Bearer == "" {
		return
	}
	h.Set("Authorization", "Bearer "+string(a.Bearer))
	if a.Key != nil {
		ts := strconv.FormatInt(now.Unix(), 10)
		sig := ed25519.Sign(a.Key, proofMessage(ts, method, target))
		h.Set("Keyway-Proof", ts+"."+base64.RawURLEncoding.EncodeToString(sig))
	}
}

// Options configure a Client.
type Options struct {
	// URL is the portal, https://host[:port].
	URL string
	// TLS is the TLS configuration (its RootCAs from --ca); nil uses the
	// system's roots.
	TLS  *tls.Config
	Auth Auth
	// UserAgent goes on every request.
	UserAgent string
	// HTTP1 skips HTTP/2: every stream is its own connection.
	HTTP1 bool
	// Dial makes TCP connections; nil uses a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Proxy names the forward proxy to reach the portal through, or
	// none; nil reads HTTPS_PROXY and NO_PROXY (http.ProxyFromEnvironment).
	Proxy func(*http.Request) (*url.URL, error)
	// Wait is how long a stream or request waits for a connection to
	// the portal; 0 is WaitForPortal.
	Wait time.Duration
}

// Client is a connection to one portal. Close ends it and its streams.
type Client struct {
	opts     Options
	hostport string // the portal's host:port, the CONNECT authority
	base     string // https://host:port
	t2       *http2.Transport
	h1       *http.Transport

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	cc      *http2.ClientConn              // the live connection, or nil
	all     map[*http2.ClientConn]struct{} // every connection not yet dead, for Close
	http1   bool                           // the way to the portal does not pass HTTP/2
	dialing chan struct{}                  // closed when the running dial loop ends; nil when none runs
	lastErr error                          // why the last dial failed
}

// New makes a Client for the portal at opts.URL; it connects on first use.
func New(opts Options) (*Client, error) {
	u, err := url.Parse(opts.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("the portal address %q is not an https:// URL", opts.URL)
	}
	port := u.Port()
	if port == "" {
		port = "443"
	}
	hostport := net.JoinHostPort(u.Hostname(), port)
	if opts.TLS == nil {
		opts.TLS = &tls.Config{}
	}
	if opts.TLS.ServerName == "" {
		opts.TLS = opts.TLS.Clone()
		opts.TLS.ServerName = u.Hostname()
	}
	if opts.Dial == nil {
		var d net.Dialer
		opts.Dial = d.DialContext
	}
	if opts.Proxy == nil {
		opts.Proxy = http.ProxyFromEnvironment
	}
	opts.Dial = proxyDial(opts.Proxy, opts.Dial)
	if opts.Wait <= 0 {
		opts.Wait = WaitForPortal
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Client{
		opts:     opts,
		hostport: hostport,
		base:     "https://" + hostport,
		t2:       newTransport(),
		ctx:      ctx,
		cancel:   cancel,
		http1:    opts.HTTP1,
		all:      make(map[*http2.ClientConn]struct{}),
	}
	h1TLS := opts.TLS.Clone()
	h1TLS.NextProtos = []string{"http/1.1"}
	protos := new(http.Protocols)
	protos.SetHTTP1(true)
	c.h1 = &http.Transport{
		DialContext:         opts.Dial,
		TLSClientConfig:     h1TLS,
		Protocols:           protos,
		TLSHandshakeTimeout: dialTimeout,
	}
	return c, nil
}

// Close ends the connection, every stream on it, and waits for the
// client's goroutines.
func (c *Client) Close() error {
	c.cancel()
	c.mu.Lock()
	c.cc = nil
	all := c.all
	c.all = map[*http2.ClientConn]struct{}{}
	c.mu.Unlock()
	// Connections that had a GOAWAY still carry streams: they end too.
	for cc := range all {
		cc.Close()
	}
	c.h1.CloseIdleConnections()
	c.wg.Wait()
	return nil
}

// URL is the portal's base URL.
func (c *Client) URL() string { return c.base }

var errHTTP1 = errors.New("the portal is reached with HTTP/1.1")

// mux returns the live HTTP/2 connection, waiting up to WaitForPortal for
// one to be made; errHTTP1 when the portal is reached with HTTP/1.1.
func (c *Client) mux(ctx context.Context) (*http2.ClientConn, error) {
	timer := time.NewTimer(c.opts.Wait)
	defer timer.Stop()
	for {
		c.mu.Lock()
		if c.http1 {
			c.mu.Unlock()
			return nil, errHTTP1
		}
		if c.cc != nil && c.cc.CanTakeNewRequest() {
			cc := c.cc
			c.mu.Unlock()
			return cc, nil
		}
		// A connection that had a GOAWAY keeps its streams; new ones go
		// on a new connection.
		c.cc = nil
		wait := c.startDialLocked()
		c.mu.Unlock()
		select {
		case <-wait:
		case <-timer.C:
			return nil, c.unreachable()
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.ctx.Done():
			return nil, errors.New("the client is closing")
		}
	}
}

func (c *Client) unreachable() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lastErr != nil {
		return &unreachableError{fmt.Errorf("cannot reach the portal at %s within %s: %w", c.hostport, c.opts.Wait, c.lastErr)}
	}
	return &unreachableError{fmt.Errorf("cannot reach the portal at %s within %s", c.hostport, c.opts.Wait)}
}

// startDialLocked starts the dial loop unless it runs, and returns the
// channel closed when it ends.
func (c *Client) startDialLocked() <-chan struct{} {
	if c.dialing != nil {
		return c.dialing
	}
	if c.ctx.Err() != nil {
		done := make(chan struct{})
		close(done)
		return done
	}
	done := make(chan struct{})
	c.dialing = done
	c.wg.Add(1)
	go c.dialLoop(done)
	return done
}

// dialLoop connects with backoff (minBackoff doubling to maxBackoff, with
// jitter) until it succeeds or the client closes.
func (c *Client) dialLoop(done chan struct{}) {
	defer c.wg.Done()
	delay := minBackoff
	for {
		cc, wc, err := c.dialMux(c.ctx)
		c.mu.Lock()
		if err == nil || errors.Is(err, errHTTP1) || c.ctx.Err() != nil {
			if err == nil {
				if c.ctx.Err() != nil {
					cc.Close()
				} else {
					c.cc = cc
					c.all[cc] = struct{}{}
					c.wg.Add(1)
					go c.watch(cc, wc)
				}
			} else if errors.Is(err, errHTTP1) {
				c.http1 = true
			}
			c.lastErr = nil
			c.dialing = nil
			close(done)
			c.mu.Unlock()
			return
		}
		c.lastErr = err
		c.mu.Unlock()
		// Jitter of ±20 % keeps many clients from coming back at once.
		d := time.Duration(float64(delay) * (0.8 + 0.4*rand.Float64()))
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-c.ctx.Done():
			t.Stop()
		}
		delay = min(delay*2, maxBackoff)
	}
}

// watch drops cc once its connection dies and makes a new one at once, so
// a portal restart is noticed before the next local connection needs it.
func (c *Client) watch(cc *http2.ClientConn, wc *watchConn) {
	defer c.wg.Done()
	select {
	case <-wc.dead:
	case <-c.ctx.Done():
		return
	}
	cc.Close()
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.all, cc)
	if c.cc == cc {
		c.cc = nil
		c.startDialLocked()
	}
}

// watchConn tells when the connection under an HTTP/2 client connection
// fails: its read loop is the only reader.
type watchConn struct {
	net.Conn
	once sync.Once
	dead chan struct{}
}

func (w *watchConn) Read(p []byte) (int, error) {
	n, err := w.Conn.Read(p)
	if err != nil {
		w.once.Do(func() { close(w.dead) })
	}
	return n, err
}

func (w *watchConn) Close() error {
	w.once.Do(func() { close(w.dead) })
	return w.Conn.Close()
}

func (c *Client) dialTLS(ctx context.Context, protos []string) (*tls.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	raw, err := c.opts.Dial(ctx, "tcp", c.hostport)
	if err != nil {
		return nil, err
	}
	conf := c.opts.TLS.Clone()
	conf.NextProtos = protos
	tc := tls.Client(raw, conf)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, err
	}
	return tc, nil
}

func (c *Client) dialMux(ctx context.Context) (*http2.ClientConn, *watchConn, error) {
	tc, err := c.dialTLS(ctx, []string{"h2", "http/1.1"})
	if err != nil {
		return nil, nil, err
	}
	if tc.ConnectionState().NegotiatedProtocol != "h2" {
		tc.Close()
		return nil, nil, errHTTP1
	}
	wc := &watchConn{Conn: tc, dead: make(chan struct{})}
	cc, err := c.t2.NewClientConn(wc)
	if err != nil {
		wc.Close()
		return nil, nil, fmt.Errorf("start HTTP/2: %w", err)
	}
	return cc, wc, nil
}

// Refusal is the portal's answer when it does not do what was asked: the
// HTTP status and its JSON error.
type Refusal struct {
	Status  int
	Code    string `json:"error"`
	Message string `json:"message"`
	// URL, for a step-up refusal, is the page where the user passes an
	// MFA check for this device.
	URL string `json:"url"`
}

// CodeStepUp is the code of a refusal for a resource that needs a fresh
// MFA check.
const CodeStepUp = "step_up"

func (r *Refusal) Error() string {
	switch {
	case r.Message != "":
		return r.Message
	case r.Code != "":
		return r.Code
	default:
		return fmt.Sprintf("the portal answered %d %s", r.Status, http.StatusText(r.Status))
	}
}

// SignInExpired reports whether the credential is no longer good: a new
// keyway login is the way out.
func (r *Refusal) SignInExpired() bool {
	return r.Status == http.StatusUnauthorized
}

func refusal(resp *http.Response) *Refusal {
	r := &Refusal{Status: resp.StatusCode}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	_ = json.Unmarshal(b, r)
	r.Status = resp.StatusCode
	if len(r.Message) > 1024 {
		r.Message = r.Message[:1024]
	}
	if len(r.URL) > 1024 {
		r.URL = ""
	}
	return r
}

// Do sends an API request: body, when not nil, as JSON; out, when not nil,
// decoded from a 2xx answer. A non-2xx answer is a *Refusal.
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			return fmt.Errorf("encode the request: %w", err)
		}
	}
	for attempt := 0; ; attempt++ {
		if b != nil {
			rd = bytes.NewReader(b)
		}
		req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
		if err != nil {
			return fmt.Errorf("make the request: %w", err)
		}
		if b != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		req.Header.Set("User-Agent", c.opts.UserAgent)
		c.opts.Auth.set(req.Header, method, path, time.Now())
		resp, err := c.roundTrip(ctx, req)
		if err != nil {
			// A connection that died under the request: once more on
			// a new one.
			var unreachable *unreachableError
			if errors.As(err, &unreachable) {
				return err
			}
			if attempt == 0 && ctx.Err() == nil && c.ctx.Err() == nil {
				continue
			}
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			return refusal(resp)
		}
		if out == nil {
			return nil
		}
		if err := json.NewDecoder(io.LimitReader(resp.Body, maxAPIBody)).Decode(out); err != nil {
			return fmt.Errorf("read the portal's answer to %s %s: %w", method, path, err)
		}
		return nil
	}
}

// unreachableError is the end of the wait for a connection to the portal.
type unreachableError struct{ err error }

func (e *unreachableError) Error() string { return e.err.Error() }
func (e *unreachableError) Unwrap() error { return e.err }

func (c *Client) roundTrip(ctx context.Context, req *http.Request) (*http.Response, error) {
	cc, err := c.mux(ctx)
	if errors.Is(err, errHTTP1) {
		return c.h1.RoundTrip(req)
	}
	if err != nil {
		return nil, err
	}
	return cc.RoundTrip(req)
}

// Stream is one tunnel stream: what is written goes to the target, what
// the target sends is read. CloseWrite ends the way to the target.
type Stream struct {
	// Session is the portal's session id for the stream.
	Session string

	r          io.Reader
	w          io.Writer
	closeWrite func() error
	close      func() error
	trailer    func() http.Header // nil over HTTP/1.1
	eof        atomic.Bool

	// Over HTTP/2 the portal ends a stream whose target ended with
	// END_STREAM and RST_STREAM(NO_ERROR), which fails writes at once,
	// while the target's last bytes may still be on their way to the
	// reader: a failed Write waits for the reading side to end (or for
	// Close), so those bytes are not cut off by the write error.
	readDone  chan struct{} // closed when Read returned an error
	readOnce  sync.Once
	closed    chan struct{} // closed by Close
	closeOnce sync.Once
}

func newStream() *Stream {
	return &Stream{readDone: make(chan struct{}), closed: make(chan struct{})}
}

func (s *Stream) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil {
		if err == io.EOF {
			s.eof.Store(true)
		}
		s.readOnce.Do(func() { close(s.readDone) })
	}
	return n, err
}

// EndReason is why the portal ended the stream (its Keyway-End trailer:
// an administrator ended it, the device was revoked, ...), once Read has
// returned io.EOF; "" when the target ended it or the portal did not say.
func (s *Stream) EndReason() string {
	if s.trailer == nil || !s.eof.Load() {
		return ""
	}
	v := s.trailer().Get("Keyway-End")
	if len(v) > maxEndReason {
		v = v[:maxEndReason]
	}
	return v
}
func (s *Stream) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	if err != nil {
		select {
		case <-s.readDone:
		case <-s.closed:
		}
	}
	return n, err
}

// CloseWrite tells the target there is nothing more to come.
func (s *Stream) CloseWrite() error { return s.closeWrite() }

// Close ends the stream both ways.
func (s *Stream) Close() error {
	s.closeOnce.Do(func() { close(s.closed) })
	return s.close()
}

// Open starts a stream to target (a Keyway-Target value). ctx bounds only
// the opening: the stream lives until Close or the client's Close. A
// refused stream is a *Refusal.
func (c *Client) Open(ctx context.Context, target string) (*Stream, error) {
	for attempt := 0; ; attempt++ {
		cc, err := c.mux(ctx)
		if errors.Is(err, errHTTP1) {
			return c.openHTTP1(ctx, target)
		}
		if err != nil {
			return nil, err
		}
		s, err := c.openHTTP2(ctx, cc, target)
		var ref *Refusal
		if err != nil && !errors.As(err, &ref) && attempt == 0 && ctx.Err() == nil && c.ctx.Err() == nil && !cc.CanTakeNewRequest() {
			// The connection died as the stream started: once more.
			continue
		}
		return s, err
	}
}

func (c *Client) header(h http.Header, target string) {
	h.Set("Keyway-Target", target)
	h.Set("User-Agent", c.opts.UserAgent)
	c.opts.Auth.set(h, http.MethodConnect, target, time.Now())
}

func (c *Client) openHTTP2(ctx context.Context, cc *http2.ClientConn, target string) (*Stream, error) {
	pr, pw := io.Pipe()
	sctx, cancel := context.WithCancel(c.ctx)
	req, err := http.NewRequestWithContext(sctx, http.MethodConnect, c.base, pr)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("make the request: %w", err)
	}
	req.Host = c.hostport
	c.header(req.Header, target)
	timeout := time.AfterFunc(openTimeout, cancel)
	stop := context.AfterFunc(ctx, cancel)
	resp, err := cc.RoundTrip(req)
	timeout.Stop()
	stop()
	if err != nil {
		cancel()
		pw.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("open a stream: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		ref := refusal(resp)
		resp.Body.Close()
		cancel()
		pw.Close()
		return nil, ref
	}
	s := newStream()
	s.Session = resp.Header.Get("Keyway-Session")
	s.r, s.w, s.closeWrite = resp.Body, pw, pw.Close
	s.trailer = func() http.Header { return resp.Trailer }
	s.close = func() error {
		pw.CloseWithError(net.ErrClosed)
		err := resp.Body.Close()
		cancel()
		return err
	}
	return s, nil
}

// openHTTP1 opens a stream on its own TLS connection with HTTP/1.1
// CONNECT, retrying a failed dial with backoff for up to Options.Wait.
func (c *Client) openHTTP1(ctx context.Context, target string) (*Stream, error) {
	deadline := time.Now().Add(c.opts.Wait)
	delay := minBackoff
	var tc *tls.Conn
	for {
		var err error
		tc, err = c.dialTLS(ctx, []string{"http/1.1"})
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if time.Now().Add(delay).After(deadline) {
			return nil, &unreachableError{fmt.Errorf("cannot reach the portal at %s within %s: %w", c.hostport, c.opts.Wait, err)}
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-c.ctx.Done():
			t.Stop()
			return nil, errors.New("the client is closing")
		}
		delay = min(delay*2, maxBackoff)
	}
	stop := context.AfterFunc(ctx, func() { tc.Close() })
	defer stop()
	tc.SetDeadline(time.Now().Add(openTimeout))
	h := make(http.Header)
	c.header(h, target)
	bw := bufio.NewWriterSize(tc, 1024)
	fmt.Fprintf(bw, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n", c.hostport, c.hostport)
	h.Write(bw)
	bw.WriteString("\r\n")
	if err := bw.Flush(); err != nil {
		tc.Close()
		return nil, fmt.Errorf("open a stream: %w", err)
	}
	br := bufio.NewReaderSize(tc, 1024)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		tc.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("open a stream: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		ref := refusal(resp)
		tc.Close()
		return nil, ref
	}
	tc.SetDeadline(time.Time{})
	var r io.Reader = tc
	if br.Buffered() > 0 {
		// Bytes of the stream came with the answer.
		r = io.MultiReader(io.LimitReader(br, int64(br.Buffered())), tc)
	}
	s := newStream()
	s.Session = resp.Header.Get("Keyway-Session")
	s.r, s.w, s.closeWrite, s.close = r, tc, tc.CloseWrite, tc.Close
	return s, nil
}

// newTransport is the HTTP/2 transport of the connection to the portal,
// with streamWindow as each stream's receive window.
func newTransport() *http2.Transport {
	t1 := &http.Transport{HTTP2: &http.HTTP2Config{MaxReceiveBufferPerStream: streamWindow}}
	// ConfigureTransports fails only for a transport already configured
	// for HTTP/2, which t1 is not.
	t2, _ := http2.ConfigureTransports(t1)
	t2.ReadIdleTimeout, t2.PingTimeout = pingAfter, pingTimeout
	// Strict: a stream beyond the portal's concurrent streams waits for
	// one to end, on the one connection, rather than failing.
	t2.StrictMaxConcurrentStreams = true
	return t2
}
