package examplehook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

const secret = "0123456789abcdef-test-secret"

func sign(ts string, body string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts + "." + body))
	return "v1=" + hex.EncodeToString(m.Sum(nil))
}

// clock is a settable test clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTest(max int) (*Handler, *clock) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	return New(Config{Secret: secret, Now: c.now, MaxRemembered: max, Log: slog.New(slog.DiscardHandler)}), c
}

func TestVerify(t *testing.T) {
	t.Parallel()
	body := `{"schema-version":"v1"}`
	now := int64(1_800_000_000)
	at := func(d time.Duration) string { return strconv.FormatInt(now+int64(d/time.Second), 10) }
	for _, tc := range []struct {
		name    string
		ts, sig string
		want    error
	}{
		{"now", at(0), sign(at(0), body), nil},
		{"5 minutes old", at(-MaxSkew), sign(at(-MaxSkew), body), nil},
		{"5 minutes ahead", at(MaxSkew), sign(at(MaxSkew), body), nil},
		{"5 minutes 1 second old", at(-MaxSkew - time.Second), sign(at(-MaxSkew-time.Second), body), ErrStale},
		{"5 minutes 1 second ahead", at(MaxSkew + time.Second), sign(at(MaxSkew+time.Second), body), ErrStale},
		{"signed for another time", at(time.Second), sign(at(0), body), ErrSignature},
		{"signed for another body", at(0), sign(at(0), body+" "), ErrSignature},
		{"no signature", at(0), "", ErrSignature},
		{"no version", at(0), strings.TrimPrefix(sign(at(0), body), "v1="), ErrSignature},
		{"not hex", at(0), "v1=" + strings.Repeat("z", 64), ErrSignature},
		{"short", at(0), sign(at(0), body)[:40], ErrSignature},
		{"timestamp not a number", "soon", sign("soon", body), ErrStale},
	} {
		h, _ := newTest(0)
		if err := h.Verify(tc.ts, tc.sig, []byte(body)); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestReplayMemoryIsBoundedAndForgets(t *testing.T) {
	t.Parallel()
	h, c := newTest(2)
	ts := strconv.FormatInt(c.t.Unix(), 10)
	verify := func(body string) error { return h.Verify(ts, sign(ts, body), []byte(body)) }
	if err := verify("a"); err != nil {
		t.Fatal(err)
	}
	if err := verify("a"); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay: %v", err)
	}
	if err := verify("b"); err != nil {
		t.Fatal(err)
	}
	// Full: refused, not forgotten, since "a" could otherwise be replayed.
	if err := verify("c"); !errors.Is(err, ErrFull) {
		t.Fatalf("third with room for two: %v", err)
	}
	if err := verify("a"); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay while full: %v", err)
	}
	// Once their window has passed, their timestamps are stale anyway
	// and the memory is free again.
	c.t = c.t.Add(MaxSkew + time.Second)
	if err := verify("a"); !errors.Is(err, ErrStale) {
		t.Fatalf("after the window: %v", err)
	}
	ts = strconv.FormatInt(c.t.Unix(), 10)
	if err := verify("c"); err != nil {
		t.Fatalf("after the window: %v", err)
	}
	if len(h.seen) != 1 || len(h.exp) != 1 {
		t.Fatalf("remembering %d signatures, %d expiries", len(h.seen), len(h.exp))
	}
}

func TestServeHTTP(t *testing.T) {
	t.Parallel()
	h, c := newTest(0)
	h.cfg.Users = []string{"alice"}
	h.cfg.Networks = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	h.cfg.Posture = "managed"
	ts := strconv.FormatInt(c.t.Unix(), 10)
	post := func(body string, sig string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
		r.Header.Set(headerTimestamp, ts)
		r.Header.Set(headerSignature, sig)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	for _, tc := range []struct {
		name, body string
		status     int
		allow      bool
		msg        string
	}{
		{"allowed", `{"connection-id":"1","username":"alice","public-ip":"10.1.1.1","schema-version":"v1"}`, 200, true, ""},
		{"last address of the network", `{"connection-id":"2","username":"alice","public-ip":"10.255.255.255","schema-version":"v1"}`, 200, true, ""},
		{"next network", `{"connection-id":"3","username":"alice","public-ip":"11.0.0.0","schema-version":"v1"}`, 200, false, "Connections from 11.0.0.0 are not allowed."},
		{"no address", `{"connection-id":"4","username":"alice","public-ip":"","schema-version":"v1"}`, 200, false, "Your address is unknown, so the connection was refused."},
		{"other user", `{"connection-id":"5","username":"bob","public-ip":"10.1.1.1","schema-version":"v1"}`, 200, false, "User bob may not connect through Keyway."},
		{"schema v2", `{"connection-id":"6","schema-version":"v2"}`, 400, false, ""},
		{"not JSON", `alice`, 400, false, ""},
		{"too large", strings.Repeat(" ", maxBody+1), 413, false, ""},
	} {
		w := post(tc.body, sign(ts, tc.body))
		if w.Code != tc.status {
			t.Errorf("%s: status %d %q", tc.name, w.Code, w.Body)
			continue
		}
		if w.Code != 200 {
			continue
		}
		var resp map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if resp["allow"] != tc.allow || resp["error-msg-on-denied-connection"] != tc.msg || resp["schema-version"] != "v1" ||
			len(resp["posture-compliance-statuses"].([]any)) != 1 {
			t.Errorf("%s: %v", tc.name, resp)
		}
	}
	if w := post(`{}`, sign(ts, `{"x":1}`)); w.Code != http.StatusUnauthorized {
		t.Errorf("forged: %d", w.Code)
	}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", w.Code)
	}
}

// FuzzServeHTTP: whatever arrives, the hook never allows a request the
// secret did not sign, and never panics.
func FuzzServeHTTP(f *testing.F) {
	body := `{"username":"alice","public-ip":"10.1.1.1","schema-version":"v1"}`
	f.Add("1800000000", sign("1800000000", body), []byte(body))
	f.Add("", "", []byte(""))
	f.Add("1800000000", "v1=00", []byte(`{"schema-version":"v1"}`))
	f.Add("-1", sign("-1", "null"), []byte("null"))
	f.Fuzz(func(t *testing.T, ts, sig string, body []byte) {
		h, _ := newTest(4)
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(string(body)))
		r.Header.Set(headerTimestamp, ts)
		r.Header.Set(headerSignature, sig)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code == http.StatusOK && sig != sign(ts, string(body)) {
			t.Fatalf("answered 200 to a request nobody signed: %q %q %q", ts, sig, body)
		}
	})
}
