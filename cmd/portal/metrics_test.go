package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/keyway-dev/keyway/e2e/targets"
	"github.com/keyway-dev/keyway/gateway/metrics/metricstest"
	"github.com/keyway-dev/keyway/portal/store"
)

func scrape(t *testing.T, base string) metricstest.Families { return metricstest.Scrape(t, nil, base) }

func value(f metricstest.Families, name string, labels ...string) float64 {
	return f.Value(name, labels...)
}

func waitMetric(t *testing.T, base string, want float64, name string, labels ...string) {
	t.Helper()
	metricstest.Wait(t, nil, base, want, name, labels...)
}

// TestMetricsAndHealth runs a real terminal session against sshd through
// the embedded gateway, a refused one and two sign-ins, then checks the
// counts on /metrics, the probes on both listeners, the profiles, and
// that the JSON log carries the session id.
func TestMetricsAndHealth(t *testing.T) {
	t.Parallel()
	sshd := targets.NewSSHD(t)
	ctx := context.Background()
	p, log, _ := startPortalWith(t, serveConfig{DataDir: filepath.Join(t.TempDir(), "data"), Listen: "127.0.0.1:0",
		MetricsListen: "127.0.0.1:0", PprofListen: "127.0.0.1:0", LogFormat: "json"})
	if p.MetricsURL == "" || p.PprofURL == "" {
		t.Fatalf("metrics at %q, profiles at %q", p.MetricsURL, p.PprofURL)
	}
	st := p.Store
	u, err := st.CreateUser(ctx, store.User{Name: "alice", Role: store.RoleUser}, mustHash(t, "user-password-1"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := st.CreateResource(ctx, store.Resource{Name: "box", Protocol: "ssh", Host: sshd.Host, Port: sshd.Port, Login: sshd.User},
		&store.Secrets{Password: sshd.Password})
	if err != nil {
		t.Fatal(err)
	}
	other, err := st.CreateResource(ctx, store.Resource{Name: "not-granted", Protocol: "ssh", Host: sshd.Host, Port: sshd.Port, Login: sshd.User},
		&store.Secrets{Password: sshd.Password})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateGrant(ctx, res.ID, "user", u.ID); err != nil {
		t.Fatal(err)
	}

	// Nothing counted before anything happened.
	fams := scrape(t, p.MetricsURL)
	if v := value(fams, "keyway_portal_sessions_started_total"); v != -1 {
		t.Fatalf("sessions counted before any: %v", v)
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if value(fams, name) <= 0 {
			t.Errorf("%s missing", name)
		}
	}
	if v := value(fams, "keyway_portal_gateway_state", "gateway", "embedded", "state", "available"); v != 1 {
		t.Errorf("embedded gateway available = %v, want 1", v)
	}

	// One failed and one good sign-in.
	alice := newBrowser(t, p.URL)
	if resp := alice.post("/signin", url.Values{"username": {"alice"}, "password": {"wrong-password"}}); resp.StatusCode == http.StatusSeeOther {
		t.Fatal("a wrong password signed in")
	}
	alice.signIn("alice", "user-password-1")

	// A terminal session, to its end.
	c, ws := alice.terminal(res.ID)
	if c["type"] != "connected" {
		t.Fatalf("terminal: %v", c)
	}
	waitMetric(t, p.MetricsURL, 1, "keyway_portal_sessions_live", "protocol", "ssh")
	ws.WriteMessage(websocket.BinaryMessage, []byte("echo metrics-$((20+22))\n"))
	readUntil(t, ws, "metrics-42")
	ws.WriteMessage(websocket.BinaryMessage, []byte("exit\n"))
	ws.Close()
	waitMetric(t, p.MetricsURL, 0, "keyway_portal_sessions_live", "protocol", "ssh")

	// A session refused: no grant.
	if c, _ := alice.terminal(other.ID); c["type"] != "error" || c["code"] != "no_grant" {
		t.Fatalf("terminal without a grant: %v", c)
	}

	fams = scrape(t, p.MetricsURL)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"keyway_portal_sessions_started_total", []string{"protocol", "ssh", "outcome", "ok"}, 1},
		{"keyway_portal_sessions_started_total", []string{"protocol", "ssh", "outcome", "no_grant"}, 1},
		{"keyway_portal_connect_seconds", []string{"protocol", "ssh"}, 1},
		{"keyway_portal_sign_ins_total", []string{"method", "password", "outcome", "ok"}, 1},
		{"keyway_portal_sign_ins_total", []string{"method", "password", "outcome", "failed"}, 1},
	} {
		if got := value(fams, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// "echo metrics-$((20+22))\n" (24 bytes) went in, whose answer was
	// read; the echo and the answer came out.
	if in, out := value(fams, "keyway_portal_bytes_relayed_total", "direction", "in"), value(fams, "keyway_portal_bytes_relayed_total", "direction", "out"); in < 24 || out < 20 {
		t.Errorf("bytes relayed in %v, out %v; want at least what was typed and echoed", in, out)
	}
	// The terminal's recording reaches the portal through the embedded
	// gateway's spool and upload.
	waitMetric(t, p.MetricsURL, 1, "keyway_portal_recordings_uploaded_total", "outcome", "ok")
	if v := value(scrape(t, p.MetricsURL), "keyway_portal_recording_bytes_uploaded_total"); v <= 0 {
		t.Errorf("recording bytes uploaded = %v", v)
	}
	// The embedded gateway's own view, on the same registry; the refused
	// session never reached it.
	waitMetric(t, p.MetricsURL, 1, "keyway_gateway_recordings_uploaded_total")
	waitMetric(t, p.MetricsURL, 0, "keyway_gateway_recordings_pending")
	waitMetric(t, p.MetricsURL, 0, "keyway_gateway_recordings_pending_bytes")
	fams = scrape(t, p.MetricsURL)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"keyway_gateway_sessions_started_total", []string{"protocol", "ssh", "outcome", "ok"}, 1},
		{"keyway_gateway_sessions_live", []string{"protocol", "ssh"}, 0},
		{"keyway_gateway_recordings_spooled_total", nil, 1},
		{"keyway_gateway_upload_failures_total", nil, 0},
	} {
		if got := value(fams, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if v := value(fams, "keyway_gateway_spool_free_bytes"); v <= 0 {
		t.Errorf("spool free bytes = %v", v)
	}
	if in, out := value(fams, "keyway_gateway_bytes_relayed_total", "direction", "in"), value(fams, "keyway_gateway_bytes_relayed_total", "direction", "out"); in < 28 || out < 20 {
		t.Errorf("gateway bytes relayed in %v, out %v", in, out)
	}

	// Profiles on their own listener.
	if code, _ := get(t, p.PprofURL+"/debug/pprof/"); code != http.StatusOK {
		t.Errorf("pprof index: %d", code)
	}

	// Every log line is JSON; the session's lines carry its id and the id
	// of the request that opened it, as does the refusal.
	var sessionLines, refusals int
	sc := bufio.NewScanner(strings.NewReader(log.String()))
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("log line is not JSON: %v\n%s", err, sc.Text())
		}
		if line["msg"] == "session started" || line["msg"] == "session ended" {
			if s, _ := line["session"].(string); s == "" {
				t.Errorf("session line without its id: %s", sc.Text())
			}
			if r, _ := line["request"].(string); len(r) != 16 {
				t.Errorf("session line without its request id: %s", sc.Text())
			}
			sessionLines++
		}
		if line["msg"] == "terminal connection refused" {
			if r, _ := line["request"].(string); len(r) != 16 {
				t.Errorf("refusal without its request id: %s", sc.Text())
			}
			refusals++
		}
	}
	if refusals != 1 {
		t.Errorf("%d refusals logged, want 1", refusals)
	}
	if sessionLines < 2 {
		t.Errorf("%d session lines in the log, want its start and end:\n%s", sessionLines, log.String())
	}

	// Ready on both listeners; then not, saying why.
	https := newBrowser(t, p.URL).client
	resp, err := https.Get(p.URL + "/livez")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if id := resp.Header.Get("X-Request-Id"); len(id) != 16 {
		t.Errorf("X-Request-Id %q", id)
	}
	for _, base := range []string{p.URL, p.MetricsURL} {
		if code, body := getWith(t, https, base+"/readyz"); code != http.StatusOK {
			t.Errorf("%s/readyz: %d %s", base, code, body)
		}
		if code, _ := getWith(t, https, base+"/livez"); code != http.StatusOK {
			t.Errorf("%s/livez: %d", base, code)
		}
	}
	p.Pool.Set(nil)
	checkNotReady(t, https, p.URL, "gateways", "no gateway is available")
	st.Close()
	checkNotReady(t, https, p.MetricsURL, "database", "closed")
	if code, _ := get(t, p.MetricsURL+"/livez"); code != http.StatusOK {
		t.Errorf("/livez with the database closed: %d, want 200: the process is alive", code)
	}
}

func get(t *testing.T, u string) (int, string) { return getWith(t, http.DefaultClient, u) }

func getWith(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}

// checkNotReady waits until base/readyz answers 503 with check failing
// with words containing want: an answer is reused for up to a second.
func checkNotReady(t *testing.T, c *http.Client, base, check, want string) {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for {
		code, body := getWith(t, c, base+"/readyz")
		var r struct {
			Ready  bool
			Checks map[string]string
		}
		err := json.Unmarshal([]byte(body), &r)
		if err == nil && code == http.StatusServiceUnavailable && !r.Ready && strings.Contains(r.Checks[check], want) {
			return
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Errorf("readyz: %d %s, want 503 with %s: %s (%v)", code, body, check, want, err)
			return
		}
	}
}

// TestPprofListenRefusesOtherMachines checks that profiling never listens
// where another machine could reach it, and that metrics default to
// loopback.
func TestPprofListenRefusesOtherMachines(t *testing.T) {
	t.Parallel()
	for _, addr := range []string{"0.0.0.0:0", "[::]:0", "192.0.2.1:6060", "example.com:6060"} {
		err := serveWith(context.Background(), serveConfig{DataDir: t.TempDir(), Listen: "127.0.0.1:0", PprofListen: addr, LogLevel: "info"}, io.Discard, nil)
		if err == nil || !strings.Contains(err.Error(), "not a loopback address") {
			t.Errorf("--pprof-listen %s: %v, want refused", addr, err)
		}
	}
	err := serveWith(context.Background(), serveConfig{DataDir: t.TempDir(), Listen: "127.0.0.1:0", LogFormat: "yaml", LogLevel: "info"}, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "use text or json") {
		t.Errorf("--log-format yaml: %v", err)
	}
}
