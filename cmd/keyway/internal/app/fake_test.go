package app

import (
	"bufio"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/cmd/keyway/internal/client"
	"github.com/keyway-dev/keyway/gateway/wire"
)

// fakePortal is a portal as the contract describes it, enough for the
// client: device sign-in with real signature checks, status, and CONNECT
// streams to loopback targets, over HTTP/2 or HTTP/1.1.
type fakePortal struct {
	t      *testing.T
	http1  bool // offer only HTTP/1.1
	addr   string
	caFile string

	accepted  atomic.Int64 // TCP connections accepted
	connects  atomic.Int64 // CONNECT requests seen
	http1Seen atomic.Int64 // of which over HTTP/1.1
	active    atomic.Int64 // streams open now
	changed   chan struct{}
	// maxStreams is the server's concurrent streams per connection
	// (1024 when 0), read by start.
	maxStreams int

	mu         sync.Mutex
	srv        *httptest.Server
	resources  map[string]fakeResource
	networks   []StatusNetwork
	limit      int
	tokens     map[string]string // API token → user
	devices    map[string]ed25519.PublicKey
	pending    map[string]*fakeRequest
	autoOK     bool
	tokenError string // the token endpoint's answer, when set
	expired    bool
	netSeen    []string // net/ targets asked for
	resizes    []string
}

type fakeResource struct {
	StatusResource
	dial string // the loopback address it reaches
	end  string // the Keyway-End trailer the stream ends with
	// answer, when set, is sent at once, and the stream ends without
	// reading the client's bytes (as the portal does when the target
	// ends first).
	answer  []byte
	refusal *client.Refusal
}

type fakeRequest struct {
	pub      ed25519.PublicKey
	userCode string
	approved bool
	taken    bool
}

func newFakePortal(t *testing.T, http1 bool) *fakePortal {
	f := &fakePortal{
		t: t, http1: http1, changed: make(chan struct{}, 1),
		resources: map[string]fakeResource{}, limit: 256,
		tokens: map[string]string{}, devices: map[string]ed25519.PublicKey{}, pending: map[string]*fakeRequest{},
	}
	f.start()
	t.Cleanup(f.stop)
	der := f.srv.Certificate().Raw
	f.caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(f.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fakePortal) url() string { return "https://" + f.addr }

// start serves on f.addr (a new loopback port the first time, the same
// one after stop).
func (f *fakePortal) start() {
	addr := f.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		f.t.Fatalf("listen: %v", err)
	}
	// Go's HTTP/2 server refuses a CONNECT with :path or :scheme, so
	// every stream that works here was sent with :authority alone.
	srv := httptest.NewUnstartedServer(http.HandlerFunc(f.serveHTTP))
	srv.Listener.Close()
	srv.Listener = l
	srv.EnableHTTP2 = !f.http1
	// As the portal must: Go's default of 1 MiB makes the HTTP/2 client
	// hold a 512 KiB send buffer per stream, idle or not.
	maxStreams := 1024
	if f.maxStreams > 0 {
		maxStreams = f.maxStreams
	}
	srv.Config.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: maxStreams, MaxReadFrameSize: 16 << 10}
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			f.accepted.Add(1)
		}
	}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	f.mu.Lock()
	f.srv = srv
	f.addr = l.Addr().String()
	f.mu.Unlock()
}

// stop ends the server and every connection to it.
func (f *fakePortal) stop() {
	f.mu.Lock()
	srv := f.srv
	f.srv = nil
	f.mu.Unlock()
	if srv != nil {
		srv.CloseClientConnections()
		srv.Close()
	}
}

func (f *fakePortal) notify() {
	select {
	case f.changed <- struct{}{}:
	default:
	}
}

func (f *fakePortal) addResource(r fakeResource) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resources[r.Name] = r
}

// addDevice signs a device in directly and writes its configuration, as
// keyway login would.
func (f *fakePortal) token(tok, user string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokens[tok] = user
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func refuse(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]string{"error": code, "message": msg})
}

// auth checks the bearer credential and, for a device, its proof.
func (f *fakePortal) auth(r *http.Request, target string) (string, bool) {
	bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return "", false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if user, ok := f.tokens[bearer]; ok {
		return user, true
	}
	pub, ok := f.devices[bearer]
	if !ok || f.expired {
		return "", false
	}
	ts, sig, ok := strings.Cut(r.Header.Get("Keyway-Proof"), ".")
	if !ok {
		return "", false
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(sec, 0)).Abs() > 300*time.Second {
		return "", false
	}
	b, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !ed25519.Verify(pub, []byte("keyway-proof\n"+ts+"\n"+r.Method+"\n"+target), b) {
		return "", false
	}
	return "alice", true
}

func (f *fakePortal) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		f.serveConnect(w, r)
		return
	}
	switch r.URL.Path {
	case "/api/v1/client/login":
		var body struct {
			PublicKey string `json:"public_key"`
			Name      string `json:"name"`
		}
		json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&body)
		pub, err := base64.StdEncoding.DecodeString(body.PublicKey)
		if err != nil || len(pub) != ed25519.PublicKeySize || body.Name == "" {
			refuse(w, 400, "invalid_request", "bad key or name")
			return
		}
		f.mu.Lock()
		n := len(f.pending) + 1
		code := fmt.Sprintf("dc%d", n)
		req := &fakeRequest{pub: pub, userCode: fmt.Sprintf("ABCD-EF%02d", n), approved: f.autoOK}
		f.pending[code] = req
		f.mu.Unlock()
		writeJSON(w, 200, map[string]any{
			"device_code": code, "user_code": req.userCode,
			"verification_uri":          f.url() + "/device",
			"verification_uri_complete": f.url() + "/device?code=" + req.userCode,
			"interval":                  0, "expires_in": 60,
		})
	case "/api/v1/client/token":
		var body struct {
			DeviceCode string `json:"device_code"`
			Signature  string `json:"signature"`
		}
		json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&body)
		f.mu.Lock()
		defer f.mu.Unlock()
		req := f.pending[body.DeviceCode]
		sig, err := base64.RawURLEncoding.DecodeString(body.Signature)
		switch {
		case req == nil || err != nil || !ed25519.Verify(req.pub, []byte("keyway-device-token\n"+body.DeviceCode), sig):
			refuse(w, 400, "invalid_request", "unknown code or bad signature")
		case f.tokenError != "":
			refuse(w, 400, f.tokenError, "")
		case req.taken:
			refuse(w, 400, "invalid_grant", "taken")
		case !req.approved:
			refuse(w, 400, "authorization_pending", "")
		default:
			req.taken = true
			cred := fmt.Sprintf("kwd_%d_secret%s", len(f.devices)+1, body.DeviceCode)
			f.devices[cred] = req.pub
			writeJSON(w, 200, map[string]any{
				"credential": cred, "expires_at": time.Now().Add(12 * time.Hour).Format(time.RFC3339),
				"user": "alice", "device": map[string]any{"id": len(f.devices), "name": "laptop"},
			})
		}
	case "/api/v1/client/logout":
		if _, ok := f.auth(r, r.URL.Path); !ok || r.Method != http.MethodPost {
			refuse(w, 401, "invalid_credential", "no")
			return
		}
		f.mu.Lock()
		delete(f.devices, strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
		f.mu.Unlock()
		writeJSON(w, 200, map[string]any{})
	case "/api/v1/client/status":
		user, ok := f.auth(r, r.URL.Path)
		if !ok {
			refuse(w, 401, "expired_credential", "expired")
			return
		}
		f.mu.Lock()
		var device any
		if strings.HasPrefix(r.Header.Get("Authorization"), "Bearer kwd_") {
			device = map[string]any{"id": 1, "name": "laptop"}
		}
		st := map[string]any{"user": user, "device": device, "networks": f.networks,
			"limits": map[string]int{"streams_per_device": f.limit, "streams_per_user": 512}}
		var res []StatusResource
		for _, r := range f.resources {
			res = append(res, r.StatusResource)
		}
		st["resources"] = res
		f.mu.Unlock()
		writeJSON(w, 200, st)
	default:
		http.NotFound(w, r)
	}
}

// approve approves the pending request with the user code the browser
// was sent to.
func (f *fakePortal) approve(uri string) error {
	_, code, ok := strings.Cut(uri, "?code=")
	if !ok {
		return errors.New("no code in " + uri)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range f.pending {
		if p.userCode == code {
			p.approved = true
			return nil
		}
	}
	return errors.New("no request with code " + code)
}

func (f *fakePortal) serveConnect(w http.ResponseWriter, r *http.Request) {
	f.connects.Add(1)
	if r.ProtoMajor == 1 {
		f.http1Seen.Add(1)
	}
	target := r.Header.Get("Keyway-Target")
	if _, ok := f.auth(r, target); !ok {
		refuse(w, 401, "expired_credential", "expired")
		return
	}
	if r.Host != f.addr {
		refuse(w, 400, "bad_request", "authority "+r.Host)
		return
	}
	kind, rest, _ := strings.Cut(target, "/")
	var dial, end string
	switch kind {
	case "resource", "terminal":
		name, query, _ := strings.Cut(rest, "?")
		f.mu.Lock()
		res, ok := f.resources[name]
		f.mu.Unlock()
		switch {
		case !ok:
			refuse(w, 403, "no_grant", "no grant")
			return
		case res.refusal != nil:
			refuse(w, res.refusal.Status, res.refusal.Code, res.refusal.Message)
			return
		case kind == "terminal":
			f.serveTerminal(w, r, query)
			return
		case res.answer != nil:
			w.WriteHeader(200)
			w.Write(res.answer)
			return
		}
		dial, end = res.dial, res.end
	case "net":
		f.mu.Lock()
		f.netSeen = append(f.netSeen, rest)
		f.mu.Unlock()
		host, port, err := net.SplitHostPort(rest)
		if err != nil {
			refuse(w, 400, "bad_target", err.Error())
			return
		}
		if a, err := netip.ParseAddr(host); err == nil && !a.IsLoopback() {
			refuse(w, 403, "not_allowed", "not on loopback")
			return
		}
		dial = net.JoinHostPort(host, port)
	default:
		refuse(w, 400, "bad_target", target)
		return
	}
	tc, err := net.Dial("tcp", dial)
	if err != nil {
		refuse(w, 502, "target_refused", "the target refused the connection")
		return
	}
	defer tc.Close()
	f.active.Add(1)
	f.notify()
	defer func() { f.active.Add(-1); f.notify() }()
	var in io.Reader = r.Body
	var out io.Writer
	var closeOut func()
	if r.ProtoMajor == 1 {
		hj, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer hj.Close()
		io.WriteString(hj, "HTTP/1.1 200 OK\r\nKeyway-Session: s1\r\n\r\n")
		in = io.MultiReader(io.LimitReader(brw.Reader, int64(brw.Reader.Buffered())), hj)
		out = hj
		closeOut = func() { hj.(interface{ CloseWrite() error }).CloseWrite() }
	} else {
		w.Header().Set("Keyway-Session", "s1")
		w.Header().Set("Trailer", "Keyway-End")
		w.WriteHeader(200)
		rc := http.NewResponseController(w)
		rc.Flush()
		out = flushWriter{w, rc}
		closeOut = func() {
			if end != "" {
				w.Header().Set("Keyway-End", end)
			}
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(tc, in)
		tc.(*net.TCPConn).CloseWrite()
	}()
	io.Copy(out, tc)
	closeOut()
	<-done
}

type flushWriter struct {
	w  io.Writer
	rc *http.ResponseController
}

func (fw flushWriter) Write(p []byte) (int, error) {
	n, err := fw.w.Write(p)
	if err == nil {
		err = fw.rc.Flush()
	}
	return n, err
}

// serveTerminal greets, echoes data frames, and ends with status 3 when
// it reads "exit".
func (f *fakePortal) serveTerminal(w http.ResponseWriter, r *http.Request, query string) {
	w.WriteHeader(200)
	rc := http.NewResponseController(w)
	fw := wire.NewFrameWriter(flushWriter{w, rc})
	fw.Write(wire.FrameData, []byte("hello "+query+"\r\n"))
	fr := wire.NewFrameReader(bufio.NewReader(r.Body))
	for {
		t, p, err := fr.Next()
		if err != nil {
			return
		}
		switch t {
		case wire.FrameData:
			fw.Write(wire.FrameData, p)
			if strings.Contains(string(p), "exit") {
				fw.Write(wire.FrameExit, wire.Exit{Status: 3}.Payload())
				return
			}
		case wire.FrameResize:
			c, rows, _ := wire.ParseResize(p)
			f.mu.Lock()
			f.resizes = append(f.resizes, fmt.Sprintf("%dx%d", c, rows))
			f.mu.Unlock()
			f.notify()
		}
	}
}

// echoServer echoes each connection until its end, then closes it.
func echoServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return l.Addr().String()
}

// syncBuffer is an output that tests can wait on.
type syncBuffer struct {
	mu      sync.Mutex
	b       strings.Builder
	changed chan struct{}
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{changed: make(chan struct{})} }

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Write(p)
	close(s.changed)
	s.changed = make(chan struct{})
	return len(p), nil
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor waits until the output holds sub.
func (s *syncBuffer) waitFor(t *testing.T, sub string) {
	t.Helper()
	timer := time.NewTimer(20 * time.Second)
	defer timer.Stop()
	for {
		s.mu.Lock()
		ok := strings.Contains(s.b.String(), sub)
		ch := s.changed
		s.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-timer.C:
			t.Fatalf("waited in vain for %q in:\n%s", sub, s.String())
		}
	}
}

// waitUntil waits for cond, checked on each of f's changes.
func (f *fakePortal) waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	timer := time.NewTimer(20 * time.Second)
	defer timer.Stop()
	for !cond() {
		select {
		case <-f.changed:
		case <-timer.C:
			t.Fatalf("waited in vain for %s", what)
		}
	}
}
