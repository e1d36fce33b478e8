package bench

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/keyway-dev/keyway/e2e/hookexample/examplehook"
)

const (
	// hookConnects is how many connects each path gets per iteration,
	// in hookRounds alternating rounds.
	hookConnects = 20
	hookRounds   = 4
	hookSecret   = "bench-hook-shared-secret-0123456789"
)

// signIn signs in to the demo portal as login and returns the client.
func signIn(b *testing.B, info demoInfo, login demoLogin) *http.Client {
	b.Helper()
	jar, _ := cookiejar.New(nil)
	// The demo portal has a self-signed certificate on loopback.
	c := &http.Client{Jar: jar, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := c.PostForm(info.URL+"/signin", url.Values{"username": {login.Name}, "password": {login.Password}})
	if err != nil {
		b.Fatalf("sign in as %s: %v", login.Name, err)
	}
	resp.Body.Close()
	return c
}

// apiToken creates an API token for the signed-in admin through the
// account page, as an admin would.
func apiToken(b *testing.B, c *http.Client, info demoInfo) string {
	b.Helper()
	resp, err := c.PostForm(info.URL+"/account/tokens", url.Values{
		"name": {"hook bench"}, "expires_days": {"1"}, "password": {info.Admin.Password}})
	if err != nil {
		b.Fatalf("create API token: %v", err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`id="new-token"[^>]*>([^<]+)<`).FindSubmatch(page)
	if m == nil {
		b.Fatalf("no new token on the account page (status %d)", resp.StatusCode)
	}
	return string(m[1])
}

// putHook changes the hook settings through the API.
func putHook(b *testing.B, c *http.Client, info demoInfo, token string, settings map[string]any) {
	b.Helper()
	body, _ := json.Marshal(settings)
	req, _ := http.NewRequest(http.MethodPut, info.URL+"/api/v1/settings/hook", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		b.Fatalf("PUT hook settings: %v", err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("PUT hook settings: %d %s", resp.StatusCode, answer)
	}
}

// timedConnect opens a terminal, returns the time until its "connected"
// message, then closes it and waits for the portal to end the session, so
// the next connect starts from the same state.
func timedConnect(d *websocket.Dialer, wsURL, origin string) (time.Duration, error) {
	start := time.Now()
	ws, _, err := d.Dial(wsURL, http.Header{"Origin": {origin}})
	if err != nil {
		return 0, fmt.Errorf("open terminal WebSocket: %w", err)
	}
	defer ws.Close()
	for {
		mt, p, err := ws.ReadMessage()
		if err != nil {
			return 0, fmt.Errorf("wait for connected: %w", err)
		}
		if mt != websocket.TextMessage {
			continue
		}
		if !bytes.Contains(p, []byte(`"connected"`)) {
			return 0, fmt.Errorf("terminal refused: %s", p)
		}
		break
	}
	took := time.Since(start)
	ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(5*time.Second))
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, _, err := ws.NextReader(); err != nil {
			break // the portal closed its side
		}
	}
	return took, nil
}

// BenchmarkConnectHook measures the connect time of a terminal (WebSocket
// open until "connected", through portal, gateway and sshd) with the
// connection authorization hook disabled and enabled, alternating in
// rounds so both paths see the same machine state. The hook is the example
// hook on loopback, answering allow at once; it counts its requests so the
// benchmark fails if the enabled path did not ask it.
func BenchmarkConnectHook(b *testing.B) {
	info := startDemo(b)

	var calls atomic.Int64
	allow := examplehook.New(examplehook.Config{Secret: hookSecret, Log: slog.New(slog.DiscardHandler)})
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		allow.ServeHTTP(w, r)
	}))
	b.Cleanup(srv.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})

	admin := signIn(b, info, info.Admin)
	token := apiToken(b, admin, info)
	putHook(b, admin, info, token, map[string]any{"enabled": false, "url": srv.URL, "ca_bundle": string(ca), "secret": hookSecret})

	dialer, wsURL := signedInClient(b, info)
	var without, with []time.Duration
	for range b.N {
		for range hookRounds {
			for _, enabled := range []bool{false, true} {
				putHook(b, admin, info, token, map[string]any{"enabled": enabled})
				before := calls.Load()
				// One connect untimed after each change: the hook's first
				// request opens its TLS connection, which later ones reuse.
				n := hookConnects/hookRounds + 1
				for i := range n {
					d, err := timedConnect(dialer, wsURL, info.URL)
					if err != nil {
						b.Fatalf("hook enabled %v: %v", enabled, err)
					}
					switch {
					case i == 0:
					case enabled:
						with = append(with, d)
					default:
						without = append(without, d)
					}
				}
				asked := calls.Load() - before
				if enabled && asked < int64(n) || !enabled && asked != 0 {
					b.Fatalf("hook enabled %v: %d connects asked the hook %d times", enabled, n, asked)
				}
			}
		}
	}
	putHook(b, admin, info, token, map[string]any{"enabled": false})
	for _, q := range []struct {
		name string
		p    float64
	}{{"p50", 0.5}, {"p90", 0.9}} {
		np, hp := percentile(without, q.p), percentile(with, q.p)
		b.ReportMetric(float64(np.Microseconds()), "nohook-"+q.name+"-µs")
		b.ReportMetric(float64(hp.Microseconds()), "hook-"+q.name+"-µs")
		b.ReportMetric(float64((hp - np).Microseconds()), "added-"+q.name+"-µs")
	}
	b.ReportMetric(float64(calls.Load()), "hook-calls")
}
