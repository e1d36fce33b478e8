package hook_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/e2e/hookexample/examplehook"
	"github.com/keyway-dev/keyway/portal/hook"
)

const secret = "0123456789abcdef-test-secret"

// waitLimit bounds every wait on an event in these tests; reaching it is
// a failure, not a timing measurement.
const waitLimit = 20 * time.Second

// newServer starts a loopback HTTPS server for h, closed at cleanup.
func newServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// caPEM is the server's certificate as a CA bundle.
func caPEM(srv *httptest.Server) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
}

// hookFor returns a Hook enabled against srv.
func hookFor(t *testing.T, srv *httptest.Server, maxInFlight int, opts ...hook.Option) *hook.Hook {
	t.Helper()
	h := hook.New(opts...)
	if err := h.Configure(config(srv, maxInFlight)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

func config(srv *httptest.Server, maxInFlight int) hook.Config {
	return hook.Config{Enabled: true, URL: srv.URL + "/connect", CABundle: caPEM(srv), Secret: secret, MaxInFlight: maxInFlight}
}

func sample() hook.Request {
	return hook.Request{
		ConnectionID: "c-1", EndpointID: "portal-1", Username: "alice", Groups: []string{"ops"},
		Platform: "Linux", PlatformVersion: "6.1", PublicIP: "127.0.0.1", ClientVersion: "Chromium 120",
		Resource: "web-1", Protocol: "ssh", Gateway: "gw-1", Segment: "lab",
	}
}

// example starts the example hook allowing alice and bob from loopback.
func example(t *testing.T, wrap func(http.Handler) http.Handler) *httptest.Server {
	t.Helper()
	nets, err := examplehook.ParseNetworks("127.0.0.0/8, ::1/128")
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler = examplehook.New(examplehook.Config{
		Secret: secret, Users: []string{"alice", "bob"}, Networks: nets, Posture: "managed-device",
		Log: slog.New(slog.DiscardHandler),
	})
	if wrap != nil {
		h = wrap(h)
	}
	return newServer(t, h)
}

// answer is a handler answering with status and body.
func answer(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

func response(allow bool, msg string, posture ...string) string {
	if posture == nil {
		posture = []string{}
	}
	b, _ := json.Marshal(map[string]any{"allow": allow, "error-msg-on-denied-connection": msg,
		"posture-compliance-statuses": posture, "schema-version": "v1"})
	return string(b)
}

func TestExampleHookAllowsAndDenies(t *testing.T) {
	t.Parallel()
	h := hookFor(t, example(t, nil), 0)
	for _, tc := range []struct {
		name     string
		edit     func(*hook.Request)
		allowed  bool
		message  string
		posture  []string
		reasonIn hook.Reason
	}{
		{"listed user from a listed network", func(*hook.Request) {}, true, "", []string{"managed-device"}, ""},
		{"IPv6 loopback", func(r *hook.Request) { r.PublicIP = "::1" }, true, "", []string{"managed-device"}, ""},
		{"IPv4-mapped loopback", func(r *hook.Request) { r.PublicIP = "::ffff:127.0.0.9" }, true, "", []string{"managed-device"}, ""},
		{"user not listed", func(r *hook.Request) { r.Username = "mallory" }, false,
			"User mallory may not connect through Keyway.", []string{"managed-device"}, hook.ReasonDenied},
		{"network not listed", func(r *hook.Request) { r.PublicIP = "10.0.0.1" }, false,
			"Connections from 10.0.0.1 are not allowed.", []string{"managed-device"}, hook.ReasonDenied},
	} {
		req := sample()
		tc.edit(&req)
		res := h.Authorize(t.Context(), req)
		if res.Allowed != tc.allowed || res.Message != tc.message || res.Reason != tc.reasonIn ||
			fmt.Sprint(res.Posture) != fmt.Sprint(tc.posture) || !res.Called || res.Err != nil || res.Elapsed <= 0 {
			t.Errorf("%s: %+v", tc.name, res)
		}
	}
}

func TestRequestCarriesEveryField(t *testing.T) {
	t.Parallel()
	got := make(chan map[string]any, 1)
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			t.Error(err)
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" || r.Method != http.MethodPost || r.URL.Path != "/connect" {
			t.Errorf("%s %s with Content-Type %q", r.Method, r.URL.Path, ct)
		}
		got <- m
		answer(200, response(true, ""))(w, r)
	}))
	h := hookFor(t, srv, 0)
	req := sample()
	req.Groups, req.ResourceTags = nil, nil
	if res := h.Authorize(t.Context(), req); !res.Allowed {
		t.Fatalf("%+v", res)
	}
	m := <-got
	for _, k := range []string{"connection-id", "endpoint-id", "common-name", "username", "groups", "platform",
		"platform-version", "public-ip", "client-version", "resource", "resource-tags", "protocol", "gateway",
		"segment", "schema-version"} {
		if _, ok := m[k]; !ok {
			t.Errorf("request has no %q: %v", k, m)
		}
	}
	if len(m) != 15 || m["schema-version"] != "v1" || m["username"] != "alice" {
		t.Errorf("request %v", m)
	}
	// Arrays, never null, so a strict hook can rely on the types.
	if _, ok := m["groups"].([]any); !ok {
		t.Errorf("groups is %#v, want an empty array", m["groups"])
	}
	if _, ok := m["resource-tags"].([]any); !ok {
		t.Errorf("resource-tags is %#v, want an empty array", m["resource-tags"])
	}
}

func TestDenyMessageIsCut(t *testing.T) {
	t.Parallel()
	msg := strings.Repeat("ü", 300)
	h := hookFor(t, newServer(t, answer(200, response(false, msg, "disk-encrypted"))), 0)
	res := h.Authorize(t.Context(), sample())
	if res.Allowed || res.Reason != hook.ReasonDenied || res.Message != strings.Repeat("ü", hook.MaxMessage) ||
		len(res.Posture) != 1 || res.Err != nil {
		t.Fatalf("%+v (message of %d characters)", res, len([]rune(res.Message)))
	}
	// A refusal without a message shows the generic one.
	h = hookFor(t, newServer(t, answer(200, response(false, "  "))), 0)
	if res := h.Authorize(t.Context(), sample()); res.Message != hook.GenericDenial || res.Reason != hook.ReasonDenied {
		t.Fatalf("%+v", res)
	}
}

// waitCtx is a handler waiting until the client gives up the request.
// It reads the body first: only then does the server notice the client
// hanging up.
func waitCtx(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	<-r.Context().Done()
}

func TestEveryFailureHasItsReason(t *testing.T) {
	t.Parallel()
	big := `{"allow":true,"error-msg-on-denied-connection":"` + strings.Repeat("x", 10<<20) + `","posture-compliance-statuses":[],"schema-version":"v1"}`
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		edit    func(*hook.Config)
		want    hook.Reason
		called  bool
	}{
		{"hook says no", answer(200, response(false, "no")), nil, hook.ReasonDenied, true},
		{"timeout", waitCtx, nil, hook.ReasonTimedOut, true},
		{"500", answer(500, "oops"), nil, hook.ReasonOther, true},
		{"403", answer(403, response(true, "")), nil, hook.ReasonOther, true},
		{"redirect", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
		}, nil, hook.ReasonOther, true},
		{"hang up", func(w http.ResponseWriter, r *http.Request) {
			c, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				c.Close()
			}
		}, nil, hook.ReasonOther, true},
		{"TLS: untrusted certificate", answer(200, response(true, "")), func(c *hook.Config) { c.CABundle = "" }, hook.ReasonOther, true},
		{"429", answer(429, ""), nil, hook.ReasonThrottled, true},
		{"garbage JSON", answer(200, "{allow: yes"), nil, hook.ReasonInvalid, true},
		{"missing allow", answer(200, `{"error-msg-on-denied-connection":"","posture-compliance-statuses":[],"schema-version":"v1"}`), nil, hook.ReasonInvalid, true},
		{"wrong types", answer(200, `{"allow":"yes","error-msg-on-denied-connection":0,"posture-compliance-statuses":{},"schema-version":1}`), nil, hook.ReasonInvalid, true},
		{"wrong schema version", answer(200, `{"allow":true,"error-msg-on-denied-connection":"","posture-compliance-statuses":[],"schema-version":"v2"}`), nil, hook.ReasonInvalid, true},
		{"11 posture statuses", answer(200, response(true, "", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11")), nil, hook.ReasonInvalid, true},
		{"10 MB body with its length", answer(200, big), nil, hook.ReasonInvalid, true},
		{"10 MB body chunked", func(w http.ResponseWriter, r *http.Request) {
			for i := 0; i < len(big); i += 1 << 16 {
				if _, err := io.WriteString(w, big[i:min(i+1<<16, len(big))]); err != nil {
					return
				}
				http.NewResponseController(w).Flush()
			}
		}, nil, hook.ReasonInvalid, true},
		{"answer just over 64 KiB", answer(200, response(true, "")+strings.Repeat(" ", hook.MaxResponse)), nil, hook.ReasonInvalid, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newServer(t, tc.handler)
			cfg := config(srv, 0)
			if tc.edit != nil {
				tc.edit(&cfg)
			}
			// Only the timeout case waits for the timeout; the others get
			// one no loaded machine reaches, so they answer with their own
			// reason (a 64 KiB answer under -race once took over 200 ms).
			timeout := 20 * time.Second
			if tc.want == hook.ReasonTimedOut {
				timeout = 200 * time.Millisecond
			}
			h := hook.New(hook.WithTimeout(timeout))
			if err := h.Configure(cfg); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(h.Close)
			res := h.Authorize(t.Context(), sample())
			if res.Allowed || res.Reason != tc.want || res.Called != tc.called {
				t.Fatalf("%+v, want reason %s", res, tc.want)
			}
			if tc.want != hook.ReasonDenied && (res.Message != hook.GenericDenial || res.Err == nil) {
				t.Fatalf("message %q, err %v: want the generic denial and an error for the log", res.Message, res.Err)
			}
			if errors.Is(res.Err, hook.ErrAbandoned) {
				t.Fatalf("%v: nobody abandoned the call", res.Err)
			}
		})
	}
}

func TestAnswerAtTheLimitIsRead(t *testing.T) {
	t.Parallel()
	body := response(true, "", "ok")
	body += strings.Repeat(" ", hook.MaxResponse-len(body))
	h := hookFor(t, newServer(t, answer(200, body)), 0)
	if res := h.Authorize(t.Context(), sample()); !res.Allowed {
		t.Fatalf("answer of exactly %d bytes: %+v", len(body), res)
	}
}

func TestServiceErrorWithoutConfiguration(t *testing.T) {
	t.Parallel()
	h := hook.New()
	x := h.Test(t.Context(), sample())
	if x.Result.Allowed || x.Result.Reason != hook.ReasonServiceError || x.Result.Called || x.Result.Message != hook.GenericDenial {
		t.Fatalf("%+v", x.Result)
	}
	// Disabled, connections are allowed without a call.
	if res := h.Authorize(t.Context(), sample()); !res.Allowed || res.Called {
		t.Fatalf("%+v", res)
	}
}

// capture records the last request its handler saw, then passes it on.
type capture struct {
	mu     sync.Mutex
	header http.Header
	body   []byte
}

func (c *capture) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		c.mu.Lock()
		c.header, c.body = r.Header.Clone(), body
		c.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		next.ServeHTTP(w, r)
	})
}

func TestSignatureCheckedAndReplayRefused(t *testing.T) {
	t.Parallel()
	var c capture
	srv := example(t, c.wrap)
	h := hookFor(t, srv, 0)
	if res := h.Authorize(t.Context(), sample()); !res.Allowed {
		t.Fatalf("signed request: %+v", res)
	}

	// The same request sent again, byte for byte, is refused.
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	t.Cleanup(client.CloseIdleConnections)
	send := func(header http.Header, body []byte) (int, string) {
		t.Helper()
		r, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/connect", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		r.Header = header
		resp, err := client.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	c.mu.Lock()
	header, body := c.header, c.body
	c.mu.Unlock()
	if code, msg := send(header, body); code != http.StatusUnauthorized || !strings.Contains(msg, "already seen") {
		t.Fatalf("replay answered %d %q", code, msg)
	}
	// A changed body under the old signature is a forgery.
	forged := bytes.Replace(body, []byte(`"alice"`), []byte(`"bob"`), 1)
	if code, msg := send(header, forged); code != http.StatusUnauthorized || !strings.Contains(msg, "signature does not match") {
		t.Fatalf("forgery answered %d %q", code, msg)
	}

	// The portal signing with another secret, or a clock off by more than
	// the window, is refused too, and the connection with it.
	for _, tc := range []struct {
		name string
		cfg  func(*hook.Config)
		opts []hook.Option
	}{
		{"wrong secret", func(c *hook.Config) { c.Secret = "another-secret-of-16+" }, nil},
		{"clock 6 minutes behind", nil, []hook.Option{hook.WithNow(func() time.Time { return time.Now().Add(-6 * time.Minute) })}},
		{"clock 6 minutes ahead", nil, []hook.Option{hook.WithNow(func() time.Time { return time.Now().Add(6 * time.Minute) })}},
	} {
		cfg := config(srv, 0)
		if tc.cfg != nil {
			tc.cfg(&cfg)
		}
		h := hook.New(tc.opts...)
		if err := h.Configure(cfg); err != nil {
			t.Fatal(err)
		}
		if res := h.Authorize(t.Context(), sample()); res.Allowed || res.Reason != hook.ReasonOther || !strings.Contains(res.Err.Error(), "401") {
			t.Errorf("%s: %+v", tc.name, res)
		}
		h.Close()
	}
	// Within the window is fine.
	h = hookFor(t, srv, 0, hook.WithNow(func() time.Time { return time.Now().Add(-4 * time.Minute) }))
	if res := h.Authorize(t.Context(), sample()); !res.Allowed {
		t.Fatalf("clock 4 minutes behind: %+v", res)
	}
}

func TestCallsRunConcurrently(t *testing.T) {
	t.Parallel()
	const calls = 100
	// Each answer takes a second: 100 calls one after the other would take
	// 100 s; side by side, about one.
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		select {
		case <-time.After(time.Second):
		case <-r.Context().Done():
			return
		}
		answer(200, response(true, "", "ok"))(w, r)
	}))
	h := hookFor(t, srv, calls)
	start := time.Now()
	var wg sync.WaitGroup
	var allowed atomic.Int64
	for i := range calls {
		wg.Go(func() {
			req := sample()
			req.ConnectionID = fmt.Sprint("c-", i)
			if res := h.Authorize(t.Context(), req); res.Allowed {
				allowed.Add(1)
			} else {
				t.Errorf("call %d: %+v", i, res)
			}
		})
	}
	wg.Wait()
	if took := time.Since(start); took > waitLimit || allowed.Load() != calls {
		t.Fatalf("%d calls of 1 s took %s, %d allowed: they ran one after another", calls, took, allowed.Load())
	}
}

// held is a hook that answers allow only when released, and reports
// each request's arrival and end.
type held struct {
	arrived chan struct{}
	ended   chan struct{}
	release chan struct{}
	once    sync.Once
	calls   atomic.Int64
	body    string
}

// free lets every held request, now and later, be answered.
func (hd *held) free() { hd.once.Do(func() { close(hd.release) }) }

func newHeld(t *testing.T, body string) (*held, *httptest.Server) {
	return newHeldWatched(t, body, nil)
}

// newHeldWatched is newHeld with connState told of its connections.
func newHeldWatched(t *testing.T, body string, connState func(net.Conn, http.ConnState)) (*held, *httptest.Server) {
	hd := &held{arrived: make(chan struct{}, 100), ended: make(chan struct{}, 100), release: make(chan struct{}), body: body}
	srv := httptest.NewUnstartedServer(hd)
	srv.Config.ConnState = connState
	srv.StartTLS()
	t.Cleanup(srv.Close)
	// Cleanups run last-registered first: release before the server waits
	// for its handlers.
	t.Cleanup(hd.free)
	return hd, srv
}

func (hd *held) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd.calls.Add(1)
	io.Copy(io.Discard, r.Body) // so the server notices the client hanging up
	defer func() { hd.ended <- struct{}{} }()
	hd.arrived <- struct{}{}
	select {
	case <-hd.release:
		answer(200, hd.body)(w, r)
	case <-r.Context().Done():
	}
}

func await(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitLimit):
		t.Fatalf("no %s within %s", what, waitLimit)
	}
}

func TestInFlightMaximumThrottles(t *testing.T) {
	t.Parallel()
	hd, srv := newHeld(t, response(true, ""))
	h := hookFor(t, srv, 2)
	results := make(chan hook.Result, 2)
	for range 2 {
		go func() { results <- h.Authorize(t.Context(), sample()) }()
	}
	await(t, hd.arrived, "first call")
	await(t, hd.arrived, "second call")

	res := h.Authorize(t.Context(), sample())
	if res.Allowed || res.Reason != hook.ReasonThrottled || res.Called || res.Message != hook.GenericDenial {
		t.Fatalf("third call with 2 in flight: %+v", res)
	}
	if n := hd.calls.Load(); n != 2 {
		t.Fatalf("the hook got %d calls; the throttled one must not reach it", n)
	}
	hd.free()
	for range 2 {
		if res := <-results; !res.Allowed {
			t.Fatalf("held call: %+v", res)
		}
	}
	// The finished calls no longer count.
	if res := h.Authorize(t.Context(), sample()); !res.Allowed {
		t.Fatalf("call after the others finished: %+v", res)
	}
}

func TestCancelEndsTheCall(t *testing.T) {
	t.Parallel()
	hd, srv := newHeld(t, response(true, ""))
	h := hookFor(t, srv, 0) // the full 30 s timeout: only cancelling ends it early
	ctx, cancel := context.WithCancel(t.Context())
	results := make(chan hook.Result, 1)
	go func() { results <- h.Authorize(ctx, sample()) }()
	await(t, hd.arrived, "call")
	start := time.Now()
	cancel()
	var res hook.Result
	select {
	case res = <-results:
	case <-time.After(waitLimit):
		t.Fatal("Authorize did not return after its context was cancelled")
	}
	if res.Allowed || res.Reason != hook.ReasonOther || !errors.Is(res.Err, hook.ErrAbandoned) || !errors.Is(res.Err, context.Canceled) {
		t.Fatalf("%+v: want a refusal whose Err matches ErrAbandoned and context.Canceled", res)
	}
	await(t, hd.ended, "end of the request at the hook")
	if took := time.Since(start); took >= hook.Timeout/2 {
		t.Fatalf("cancelled call took %s", took)
	}
}

func TestConfigureAffectsOnlyNewCalls(t *testing.T) {
	t.Parallel()
	hd, old := newHeld(t, response(true, "", "old-hook"))
	h := hookFor(t, old, 1)
	results := make(chan hook.Result, 1)
	go func() { results <- h.Authorize(t.Context(), sample()) }()
	await(t, hd.arrived, "call to the old hook")

	// The new hook denies; the call running goes on with the old one.
	newer := newServer(t, answer(200, response(false, "new hook says no")))
	if err := h.Configure(config(newer, 1)); err != nil {
		t.Fatal(err)
	}
	// The new configuration has its own in-flight count.
	if res := h.Authorize(t.Context(), sample()); res.Reason != hook.ReasonDenied || res.Message != "new hook says no" {
		t.Fatalf("new call: %+v", res)
	}
	hd.free()
	if res := <-results; !res.Allowed || len(res.Posture) != 1 || res.Posture[0] != "old-hook" {
		t.Fatalf("running call after Configure: %+v", res)
	}

	// Disabled: allowed without a call.
	cfg := config(newer, 1)
	cfg.Enabled = false
	if err := h.Configure(cfg); err != nil {
		t.Fatal(err)
	}
	if res := h.Authorize(t.Context(), sample()); !res.Allowed || res.Called {
		t.Fatalf("disabled: %+v", res)
	}
	// "Send test request" still reaches the configured hook.
	if x := h.Test(t.Context(), sample()); x.Result.Reason != hook.ReasonDenied {
		t.Fatalf("test while disabled: %+v", x.Result)
	}
}

func TestTestShowsTheExchange(t *testing.T) {
	t.Parallel()
	srv := example(t, nil)
	h := hookFor(t, srv, 0)
	x := h.Test(t.Context(), sample())
	if !x.Result.Allowed || x.Elapsed <= 0 || x.Elapsed != x.Result.Elapsed {
		t.Fatalf("%+v", x)
	}
	for _, want := range []string{"POST " + srv.URL + "/connect\n", hook.HeaderSignature + ": v1=", hook.HeaderTimestamp + ": ",
		"Content-Type: application/json", `"username":"alice"`, `"schema-version":"v1"`} {
		if !strings.Contains(x.Request, want) {
			t.Errorf("request %q lacks %q", x.Request, want)
		}
	}
	for _, want := range []string{"HTTP/1.1 200 OK\n", "Content-Type: application/json", `"allow":true`, `"managed-device"`} {
		if !strings.Contains(x.Response, want) {
			t.Errorf("response %q lacks %q", x.Response, want)
		}
	}
	if strings.Contains(x.Request, secret) {
		t.Error("the raw request shows the secret")
	}

	// A refused answer shows its status and the start of its body.
	h = hookFor(t, newServer(t, answer(503, strings.Repeat("busy ", 10000))), 0)
	x = h.Test(t.Context(), sample())
	if x.Result.Reason != hook.ReasonOther || !strings.HasPrefix(x.Response, "HTTP/1.1 503 Service Unavailable\n") ||
		!strings.Contains(x.Response, "busy busy") || len(x.Response) > 8<<10 || !strings.Contains(x.Response, "not shown") {
		t.Fatalf("%+v\n%.300s", x.Result, x.Response)
	}
}

func TestExampleHookParsesItsFlags(t *testing.T) {
	t.Parallel()
	nets, err := examplehook.ParseNetworks(" 10.1.2.3/8 ,fd00::1/64,")
	if err != nil || len(nets) != 2 || nets[0] != netip.MustParsePrefix("10.0.0.0/8") {
		t.Fatalf("%v %v", nets, err)
	}
	if _, err := examplehook.ParseNetworks("10.0.0.0/33"); err == nil {
		t.Fatal("accepted a /33")
	}
}

func TestHTTP2(t *testing.T) {
	t.Parallel()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			t.Errorf("request over %s", r.Proto)
		}
		answer(200, response(true, ""))(w, r)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	h := hookFor(t, srv, 0)
	for range 3 {
		if res := h.Authorize(t.Context(), sample()); !res.Allowed {
			t.Fatalf("%+v", res)
		}
	}
}

// TestReplacedConfigurationClosesItsConnections: a Configure does not
// leave the old hook's connections open, but waits for the call still
// using one.
func TestReplacedConfigurationClosesItsConnections(t *testing.T) {
	t.Parallel()
	closed := make(chan struct{}, 100)
	watch := func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			closed <- struct{}{}
		}
	}
	hd, srv := newHeldWatched(t, response(true, ""), watch)
	h := hookFor(t, srv, 0)

	// An idle connection is closed at once.
	hd.free()
	if res := h.Authorize(t.Context(), sample()); !res.Allowed {
		t.Fatalf("%+v", res)
	}
	other := newServer(t, answer(200, response(true, "")))
	if err := h.Configure(config(other, 0)); err != nil {
		t.Fatal(err)
	}
	await(t, closed, "close of the idle connection to the old hook")

	// One in use is closed when its call ends.
	hd2, srv2 := newHeldWatched(t, response(true, ""), watch)
	if err := h.Configure(config(srv2, 0)); err != nil {
		t.Fatal(err)
	}
	results := make(chan hook.Result, 1)
	go func() { results <- h.Authorize(t.Context(), sample()) }()
	await(t, hd2.arrived, "call")
	if err := h.Configure(config(other, 0)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-closed:
		t.Fatal("the connection of a running call was closed")
	default:
	}
	hd2.free()
	if res := <-results; !res.Allowed {
		t.Fatalf("%+v", res)
	}
	await(t, closed, "close of the old hook's connection after its call")
}

// BenchmarkAuthorize is the time a connection spends at a hook on
// loopback that answers at once.
func BenchmarkAuthorize(b *testing.B) {
	srv := httptest.NewTLSServer(answer(200, response(true, "", "ok")))
	defer srv.Close()
	h := hook.New()
	if err := h.Configure(config(srv, 0)); err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	for b.Loop() {
		if res := h.Authorize(context.Background(), sample()); !res.Allowed {
			b.Fatalf("%+v", res)
		}
	}
}
