package httpui

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/keyway-dev/keyway/gateway/wire"
	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/sessions"
	"github.com/keyway-dev/keyway/portal/store"
)

// clientFrom returns an anonymous client whose connections come from the
// loopback address ip, so that tests can sign in from many addresses.
func (f *fixture) clientFrom(ip string) *http.Client {
	f.t.Helper()
	tr := f.srv.Client().Transport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}).DialContext
	tr.MaxConnsPerHost = 0
	f.t.Cleanup(tr.CloseIdleConnections)
	jar, _ := cookiejar.New(nil)
	return &http.Client{Transport: tr, Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// signIn posts a sign-in and returns the status and Retry-After.
func (f *fixture) signIn(c *http.Client, name, password string) (int, string) {
	f.t.Helper()
	resp := f.do(c, "POST", "/signin", url.Values{"username": {name}, "password": {password}}, nil)
	readBody(resp)
	return resp.StatusCode, resp.Header.Get("Retry-After")
}

// heapPeak samples the heap in use until stop is called, which returns
// the highest sample.
func heapPeak() (stop func() uint64) {
	done, res := make(chan struct{}), make(chan uint64)
	go func() {
		var peak uint64
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-done:
				res <- peak
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 { close(done); return <-res }
}

// TestSignInFlood: attempts in flight count against their address before
// any password is checked, and a flood of sign-ins from many addresses
// runs only as many 64 MiB password checks at once as there are cores.
func TestSignInFlood(t *testing.T) {
	f := newFixture(t)
	parallel := func(n int, from func(i int) string) []int {
		codes := make([]int, n)
		clients := make([]*http.Client, n)
		for i := range n {
			clients[i] = f.clientFrom(from(i))
		}
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-start
				req, _ := http.NewRequest("POST", f.srv.URL+"/signin", strings.NewReader(url.Values{"username": {fmt.Sprintf("flood-%d", i)}, "password": {"wrong-password"}}.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				resp, err := clients[i].Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				readBody(resp)
				codes[i] = resp.StatusCode
				if resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusTooManyRequests {
					if n, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || n < 1 {
						t.Errorf("%d without a Retry-After in seconds: %q", resp.StatusCode, resp.Header.Get("Retry-After"))
					}
				}
			})
		}
		close(start)
		wg.Wait()
		return codes
	}
	count := func(codes []int) map[int]int {
		m := map[int]int{}
		for _, c := range codes {
			m[c]++
		}
		return m
	}

	// 21 at once from one address: the 21st is refused without a check.
	got := count(parallel(maxIPFailsForTest+1, func(int) string { return "127.0.0.21" }))
	if got[http.StatusTooManyRequests] < 1 || got[http.StatusUnauthorized]+got[http.StatusServiceUnavailable] > maxIPFailsForTest {
		t.Fatalf("21 parallel sign-ins from one address: %v, want at least one 429 and at most 20 others", got)
	}

	// 200 at once from 10 addresses, 20 each: every one passes the
	// address limit, so only the hash gate bounds the memory. The bound:
	// three 64 MiB blocks per core (one per check running; the collector
	// lets the heap grow to twice what was live at its last cycle, so as
	// much again of finished checks' garbage; and one more per core for
	// checks allocating while a cycle runs), plus 64 MiB for the rest.
	// The code before the gate ran all 200 at once: 12.5 GiB.
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	stop := heapPeak()
	got = count(parallel(200, func(i int) string { return fmt.Sprintf("127.0.1.%d", i%10+1) }))
	peak := stop()
	bound := base.HeapInuse + uint64(3*runtime.GOMAXPROCS(0)+1)*64<<20
	t.Logf("200 parallel sign-ins: %v; heap in use %d MiB before, peak %d MiB, bound %d MiB", got, base.HeapInuse>>20, peak>>20, bound>>20)
	if peak > bound {
		t.Errorf("heap peaked at %d MiB, over the bound of %d MiB", peak>>20, bound>>20)
	}
	if got[http.StatusUnauthorized]+got[http.StatusServiceUnavailable] != 200 {
		t.Errorf("200 parallel sign-ins from 10 addresses: %v, want only 401 and 503", got)
	}
}

// maxIPFailsForTest is the auth package's per-address limit.
const maxIPFailsForTest = 20

// TestSignInBadUsername: a name no account can have is refused with a
// clear message, kept out of the audit log but for its length, and not
// echoed back.
func TestSignInBadUsername(t *testing.T) {
	f := newFixture(t)
	c := f.client("")
	for _, name := range []string{strings.Repeat("N", 1<<19), strings.Repeat("x", 65), "user1\x00", "us\ter1"} {
		resp := f.do(c, "POST", "/signin", url.Values{"username": {name}, "password": {"wrong"}}, nil)
		body := readBody(resp)
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "A username has at most 64 bytes and no control characters.") {
			t.Errorf("%d-byte name: %d %.200s", len(name), resp.StatusCode, body)
		}
		if len(name) > 64 && strings.Contains(body, name[:65]) {
			t.Errorf("%d-byte name echoed back", len(name))
		}
	}
	evs, _ := f.audit.Search(context.Background(), store.AuditFilter{Action: audit.ActionSignIn, Outcome: audit.OutcomeFailure})
	if len(evs) != 4 {
		t.Fatalf("%d failures audited, want 4", len(evs))
	}
	for _, ev := range evs {
		if !strings.HasPrefix(ev.Actor, "(invalid username, ") || len(ev.Actor) > 40 {
			t.Errorf("audited actor %.80q", ev.Actor)
		}
	}
	if evs[len(evs)-1].Actor != fmt.Sprintf("(invalid username, %d bytes)", 1<<19) {
		t.Errorf("first audited actor %q", evs[len(evs)-1].Actor)
	}
}

// TestSafeNext feeds the sign-in page known open-redirect bypasses: each
// lands on "/" after sign-in; paths of this site are kept.
func TestSafeNext(t *testing.T) {
	t.Parallel()
	for next, want := range map[string]string{
		"/admin/users?x=1":              "/admin/users?x=1",
		"/recordings/3":                 "/recordings/3",
		"/files/2?path=%2Fhome":         "/files/2?path=%2Fhome",
		"/":                             "/",
		"":                              "/",
		"//evil.example":                "/",
		"///evil.example":               "/",
		"/\\evil.example":               "/",
		"\\\\evil.example":              "/",
		"/%09/evil.example":             "/",
		"/\t/evil.example":              "/",
		"/%0a/evil.example":             "/",
		"/\r\n/evil.example":            "/",
		"/%2F/evil.example":             "/",
		"/%2f%2fevil.example":           "/",
		"/%5Cevil.example":              "/",
		"/%5C%5Cevil.example":           "/",
		"https://evil.example":          "/",
		"http:evil.example":             "/",
		"javascript:alert(1)":           "/",
		" /evil.example":                "/",
		"\t//evil.example":              "/",
		"/\x00/evil.example":            "/",
		"/%00/evil.example":             "/",
		"/\u0085/evil.example":          "/",
		"/%E2%80%AE/x":                  "/%E2%80%AE/x", // not a control character, not a redirect
		"/%ff":                          "/",
		"/%zz":                          "/",
		"/" + strings.Repeat("a", 3000): "/",
	} {
		if got := safeNext(next); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", next, got, want)
		}
	}
}

// TestSignInNextRedirect: the redirect after sign-in, and the form's
// hidden field, never carry a bypass.
func TestSignInNextRedirect(t *testing.T) {
	f := newFixture(t)
	for _, next := range []string{"/%09/evil.example", "/\t/evil.example", "//evil.example", "/\\evil.example", "/%2F/evil.example", "https://evil.example"} {
		c := f.clientFrom("127.0.0.1")
		resp := f.do(c, "GET", "/signin?next="+url.QueryEscape(next), nil, nil)
		body := html.UnescapeString(readBody(resp))
		if strings.Contains(body, "evil.example") {
			t.Errorf("sign-in page for next=%q carries it", next)
		}
		resp = f.do(c, "POST", "/signin", url.Values{"username": {"user1"}, "password": {testPassword}, "next": {next}}, nil)
		readBody(resp)
		if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || loc != "/" {
			t.Errorf("next=%q: %d to %q, want 303 to /", next, resp.StatusCode, loc)
		}
	}
}

// TestSignInLockJourney: five failures from one address lock an account;
// that address is refused even with the right password, the owner from
// another address signs in; the admin sees the lock on the user's page
// and lifts it, audited.
func TestSignInLockJourney(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	user := f.users["user"]
	attacker, owner := f.clientFrom("127.0.0.31"), f.clientFrom("127.0.0.32")
	lock := func() {
		t.Helper()
		for i := range 5 {
			if code, _ := f.signIn(attacker, "user1", "wrong-password"); code != http.StatusUnauthorized {
				t.Fatalf("failure %d: %d", i+1, code)
			}
		}
		if code, retry := f.signIn(attacker, "user1", testPassword); code != http.StatusTooManyRequests || retry == "" {
			t.Fatalf("right password from the locking address: %d (Retry-After %q), want 429", code, retry)
		}
	}
	lock()
	if code, _ := f.signIn(owner, "user1", testPassword); code != http.StatusSeeOther {
		t.Fatalf("owner from another address: %d, want 303", code)
	}

	// Locked again; the admin sees it and unlocks.
	lock()
	admin := f.client("admin")
	page := fmt.Sprintf("/admin/users/%d", user.ID)
	body := readBody(f.do(admin, "GET", page, nil, nil))
	for _, want := range []string{">locked<", "after 5 failed sign-ins", "127.0.0.31", "Unlock and forget failed sign-ins"} {
		if !strings.Contains(body, want) {
			t.Errorf("user page lacks %q", want)
		}
	}
	// The API shows the same, to admins only.
	adminTok, _, _ := f.store.CreateToken(ctx, f.users["admin"].ID, "t", time.Hour)
	userTok, _, _ := f.store.CreateToken(ctx, user.ID, "t", time.Hour)
	api := func(tok, method string) (int, string) {
		req, _ := http.NewRequest(method, f.srv.URL+fmt.Sprintf("/api/v1/users/%d/signin-lock", user.ID), nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := f.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, readBody(resp)
	}
	if code, body := api(adminTok, "GET"); code != http.StatusOK || !strings.Contains(body, `"failures":5,`) ||
		!strings.Contains(body, `"last_addr":"127.0.0.31","locked":true,"locked_until":`) {
		t.Errorf("API lock state: %d %s", code, body)
	}
	for _, method := range []string{"GET", "DELETE"} {
		if code, _ := api(userTok, method); code != http.StatusForbidden {
			t.Errorf("%s signin-lock as a user: %d, want 403", method, code)
		}
	}
	resp := f.do(admin, "POST", page+"/unlock", url.Values{}, nil)
	readBody(resp)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != page {
		t.Fatalf("unlock: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if body := readBody(f.do(admin, "GET", page, nil, nil)); !strings.Contains(body, "No recent failed sign-ins.") || !strings.Contains(body, "was unlocked") {
		t.Errorf("user page after unlock:\n%.2000s", body)
	}
	evs, _ := f.audit.Search(ctx, store.AuditFilter{Action: audit.ActionUserUnlock})
	if len(evs) != 1 || evs[0].Actor != "admin1" || evs[0].Target != "user1" || evs[0].Details["was_locked"] != "true" {
		t.Fatalf("unlock audited as %+v", evs)
	}
	if code, _ := f.signIn(attacker, "user1", testPassword); code != http.StatusSeeOther {
		t.Fatalf("after unlock: %d, want 303", code)
	}
	// Through the API: locked, then unlocked.
	lock()
	if code, body := api(adminTok, "DELETE"); code != http.StatusNoContent {
		t.Fatalf("API unlock: %d %s", code, body)
	}
	if code, body := api(adminTok, "GET"); code != http.StatusOK || body != `{"failures":0,"locked":false}`+"\n" {
		t.Errorf("API lock state after unlock: %d %q", code, body)
	}
	if evs, _ := f.audit.Search(ctx, store.AuditFilter{Action: audit.ActionUserUnlock}); len(evs) != 2 {
		t.Errorf("%d unlocks audited, want 2", len(evs))
	}
}

// TestSlowClients: a header or form body sent slowly is cut at its
// timeout; an upload that takes longer than both, but keeps sending,
// is stored; HTTP/2 connections are offered a bounded number of streams.
func TestSlowClients(t *testing.T) {
	f := newFixture(t)
	d := f.srv.Config.Handler.(*Server).Deps
	d.Exports = nil
	d.Timeouts = Timeouts{Header: 300 * time.Millisecond, Body: 500 * time.Millisecond, UploadIdle: 2 * time.Second}
	s := New(d)
	srv := httptestServer(t, s)
	addr := srv.Listener.Addr().String()
	dial := func(proto string) *tls.Conn {
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{proto}}) // the test server's own certificate
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// drip sends head, then one byte of more every 50 ms until the
	// connection fails, and returns how long until the server answered
	// or closed.
	drip := func(head, more string) time.Duration {
		c := dial("http/1.1")
		startAt := time.Now()
		c.Write([]byte(head))
		done := make(chan struct{})
		defer close(done)
		go func() {
			tk := time.NewTicker(50 * time.Millisecond)
			defer tk.Stop()
			for i := 0; ; i = (i + 1) % len(more) {
				select {
				case <-done:
					return
				case <-tk.C:
				}
				if _, err := c.Write([]byte{more[i]}); err != nil {
					return
				}
			}
		}()
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		buf := make([]byte, 1)
		c.Read(buf)
		return time.Since(startAt)
	}
	if d := drip("GET /signin HTTP/1.1\r\nHost: x\r\n", "X-Slow: aaaa\r\n"); d > 5*time.Second {
		t.Errorf("slow header held for %v", d)
	}
	if d := drip("POST /signin HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n\r\n", "a"); d > 5*time.Second {
		t.Errorf("slow form body held for %v", d)
	}

	// A recording upload of 12 pieces, one every 100 ms: longer than the
	// header and body timeouts together.
	f2 := *f
	f2.srv = srv
	g := f2.enrolGateway("gw-slow")
	data := castOf(t, "SLOW1", "slowly-uploaded")
	m := recMeta("SLOW1", data)
	g.ran(m)
	pr, pw := newPacedReader(data, 12, 100*time.Millisecond)
	defer pw()
	startAt := time.Now()
	// Signed over the recording's digest, known beforehand, so the body
	// itself can go as slowly as it arrives (g.request reads it first).
	req, _ := http.NewRequest(http.MethodPut, srv.URL+wire.RecordingsPath+"SLOW1?offset=0", pr)
	h, _ := wire.EncodeRecordingMeta(m)
	req.Header.Set(wire.HeaderRecording, h)
	req.ContentLength = m.Size
	g.sign(req, sha256.Sum256(data))
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("slow upload: %v", err)
	}
	var st wire.RecordingStatus
	json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !st.Stored {
		t.Fatalf("slow upload: %d %+v", resp.StatusCode, st)
	}
	if took := time.Since(startAt); took < d.Timeouts.Header+d.Timeouts.Body {
		t.Fatalf("the upload took only %v", took)
	}

	// HTTP/2: the server's SETTINGS bound concurrent streams.
	c := dial("h2")
	c.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	streams, err := readMaxStreams(c)
	if err != nil || streams != maxHTTP2Streams {
		t.Fatalf("HTTP/2 MaxConcurrentStreams %d (%v), want %d", streams, err, maxHTTP2Streams)
	}
}

// httptestServer serves s as cmd/portal does, with s's own http.Server
// (timeouts, HTTP/2 settings), offering HTTP/2 and HTTP/1.1.
func httptestServer(t *testing.T, s *Server) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(s)
	srv.Config = s.HTTPServer(nil, log.New(io.Discard, "", 0))
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{NextProtos: []string{"h2", "http/1.1"}}
	srv.StartTLS()
	t.Cleanup(func() { srv.Close(); s.Close() })
	return srv
}

// newPacedReader returns a reader of data in n pieces, one per tick, as a
// slow link delivers it, and a func that stops it.
func newPacedReader(data []byte, n int, every time.Duration) (io.Reader, func()) {
	pr, pw := io.Pipe()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tk := time.NewTicker(every)
		defer tk.Stop()
		size := (len(data) + n - 1) / n
		for len(data) > 0 {
			select {
			case <-done:
				return
			case <-tk.C:
			}
			k := min(size, len(data))
			if _, err := pw.Write(data[:k]); err != nil {
				return
			}
			data = data[k:]
		}
		pw.Close()
	})
	return pr, func() { close(done); pr.Close(); wg.Wait() }
}

// readMaxStreams reads HTTP/2 frames until the server's SETTINGS and
// returns its SETTINGS_MAX_CONCURRENT_STREAMS.
func readMaxStreams(r io.Reader) (uint32, error) {
	for {
		var hdr [9]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return 0, err
		}
		n := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
		if n > 1<<14 {
			return 0, fmt.Errorf("frame of %d bytes", n)
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(r, payload); err != nil {
			return 0, err
		}
		const settings, ack, maxStreams = 4, 1, 3
		if hdr[3] != settings || hdr[4]&ack != 0 {
			continue
		}
		for p := payload; len(p) >= 6; p = p[6:] {
			if binary.BigEndian.Uint16(p) == maxStreams {
				return binary.BigEndian.Uint32(p[2:]), nil
			}
		}
		return 0, errors.New("no SETTINGS_MAX_CONCURRENT_STREAMS: unbounded")
	}
}

// TestWatchSocketLimits: a viewer's socket outlives the server's body
// timeout, and a viewer that sends more than a control frame's worth is
// cut off.
func TestWatchSocketLimits(t *testing.T) {
	f := newFixture(t)
	d := f.srv.Config.Handler.(*Server).Deps
	d.Exports = nil
	d.Timeouts = Timeouts{Header: 500 * time.Millisecond, Body: 500 * time.Millisecond}
	s := New(d)
	srv := httptestServer(t, s)
	portalEnd, gwEnd := net.Pipe()
	defer gwEnd.Close()
	term := s.live.AddForTest("W1", store.User{ID: 99, Name: "user1"}, store.Resource{Name: "web", Protocol: "ssh"}, sessions.KindTerminal, portalEnd)
	defer term.End("test over", "")

	f2 := *f
	f2.srv = srv
	admin := f2.client("admin")
	u, _ := url.Parse(srv.URL)
	dialer := websocket.Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, Jar: admin.Jar} // the test server's own certificate
	ws, _, err := dialer.Dial("wss://"+u.Host+"/sessions/W1/watch/ws", http.Header{"Origin": {srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, p, err := ws.ReadMessage(); err != nil || !strings.Contains(string(p), "Watching") {
		t.Fatalf("hello: %q %v", p, err)
	}
	// Quiet for longer than the body timeout, then output still arrives.
	<-time.After(3 * d.Timeouts.Body)
	term.Watchers.Send([]byte("still-here"))
	if _, p, err := ws.ReadMessage(); err != nil || string(p) != "still-here" {
		t.Fatalf("after a quiet spell: %q %v", p, err)
	}
	ws.WriteMessage(websocket.TextMessage, make([]byte, 4<<10))
	_, _, err = ws.ReadMessage()
	if !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
		t.Fatalf("after a 4 KiB message from the viewer: %v, want close 1009", err)
	}
}

// FuzzSafeNext: whatever the sign-in form is given, the redirect stays on
// this site, as browsers read a Location (they drop tabs and newlines
// and take a backslash for a slash).
func FuzzSafeNext(f *testing.F) {
	for _, s := range []string{"/", "/admin", "//evil", "/\\evil", "/%09/evil", "/%2F/evil", "https://evil", "/\t/evil", "/a?b=%2F%2F", "/%5C"} {
		f.Add(s)
	}
	base, _ := url.Parse("https://portal.example/signin")
	f.Fuzz(func(t *testing.T, next string) {
		got := safeNext(next)
		if got != "/" && got != next {
			t.Fatalf("safeNext(%q) = %q: neither the input nor /", next, got)
		}
		dec, err := url.PathUnescape(got)
		if err != nil {
			t.Fatalf("safeNext(%q) = %q, which does not decode: %v", next, got, err)
		}
		for _, s := range []string{got, dec} {
			browser := strings.NewReplacer("\t", "", "\n", "", "\r", "", `\`, "/").Replace(s)
			u, err := url.Parse(browser)
			if err != nil {
				t.Fatalf("safeNext(%q) = %q: %v", next, got, err)
			}
			if r := base.ResolveReference(u); r.Host != "portal.example" || r.Scheme != "https" {
				t.Fatalf("safeNext(%q) = %q leads to %s", next, got, r)
			}
		}
	})
}
