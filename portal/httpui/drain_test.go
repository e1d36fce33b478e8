package httpui

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/portal/sessions"
)

// TestReadyzDrain: a drain fails /readyz at once, even while a ready
// answer is cached, with the drain check saying so.
func TestReadyzDrain(t *testing.T) {
	f := newFixture(t)
	s := f.ui
	// A ready answer just cached, as a probe a moment ago left it.
	s.ready.mu.Lock()
	s.ready.res, s.ready.at = Readiness{Ready: true, Checks: map[string]string{"drain": "ok"}}, time.Now()
	s.ready.mu.Unlock()
	probe := func() (int, Readiness) {
		w := httptest.NewRecorder()
		s.readyz(w, httptest.NewRequest("GET", "/readyz", nil))
		var r Readiness
		json.Unmarshal(w.Body.Bytes(), &r)
		return w.Code, r
	}
	if code, _ := probe(); code != http.StatusOK {
		t.Fatalf("cached ready answer: %d", code)
	}
	if !s.Drain(time.Now().Add(time.Hour)) {
		t.Fatal("Drain did not start")
	}
	code, r := probe()
	if code != http.StatusServiceUnavailable || r.Ready || !strings.HasPrefix(r.Checks["drain"], "draining") {
		t.Fatalf("readyz while draining: %d %+v", code, r)
	}
	if s.Drain(time.Now()) {
		t.Fatal("a second Drain started again")
	}
}

// TestNoticeMessages: the restart notice is a warning that pages from
// before drains show as it is (its words with the time left), and that
// newer pages read with its seconds; likewise for desktops.
func TestNoticeMessages(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	n := sessions.Notice{Code: sessions.CodeDraining, Message: "This portal is restarting.", Deadline: now.Add(90 * time.Second)}
	c := noticeControl(n, now)
	raw, _ := json.Marshal(c)
	var got map[string]any
	json.Unmarshal(raw, &got)
	if got["type"] != "warning" || got["message"] != "This portal is restarting. It closes in 90 seconds." || got["notice"] != n.Message ||
		got["seconds"] != 90.0 || got["deadline"] != "2026-01-01T12:01:30Z" || got["code"] != "draining" {
		t.Fatalf("terminal notice %s", raw)
	}
	past := noticeControl(n, now.Add(time.Hour))
	if *past.Seconds != 0 {
		t.Fatalf("a past deadline gives %d seconds", *past.Seconds)
	}
	in := noticeInstruction(n, now)
	want := []string{"19287", "This portal is restarting. It closes in 90 seconds.", "This portal is restarting.", "90", "draining"}
	if in.Opcode != "msg" || strings.Join(in.Args, "|") != strings.Join(want, "|") {
		t.Fatalf("desktop notice %q %q", in.Opcode, in.Args)
	}
}
