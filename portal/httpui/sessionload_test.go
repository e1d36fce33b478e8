package httpui

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/alexedwards/scs/v2"
	"github.com/alexedwards/scs/v2/memstore"
)

// TestLongRequestKeepsNewerSession: a request that runs for long (a
// terminal socket, a download, an upload) must not write back the session
// as it was when it began, over what another request changed meanwhile
// (an MFA check for step-up). With plain LoadAndSave, the long request's
// end put mfa_at back to its old value.
func TestLongRequestKeepsNewerSession(t *testing.T) {
	t.Parallel()
	sm := scs.New()
	sm.Store = memstore.New()
	sm.IdleTimeout = 0
	sm.Cookie.Secure = false
	for _, idle := range []bool{false, true} {
		if idle {
			sm.IdleTimeout = 3600e9 // scs re-saves every request then
		}
		s := &Server{Deps: Deps{Sessions: sm, Logger: slog.New(slog.DiscardHandler)}}
		release := make(chan struct{})
		started := make(chan struct{})
		mux := http.NewServeMux()
		mux.HandleFunc("POST /set/{v}", func(w http.ResponseWriter, r *http.Request) {
			v, _ := strconv.ParseInt(r.PathValue("v"), 10, 64)
			sm.Put(r.Context(), sessionMFAAtKey, v)
		})
		mux.HandleFunc("GET /get", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, strconv.FormatInt(sm.GetInt64(r.Context(), sessionMFAAtKey), 10)+" "+sm.GetString(r.Context(), flashKey))
		})
		long := func(w http.ResponseWriter, r *http.Request) {
			close(started)
			<-release
			if r.Method == http.MethodPost {
				s.setFlash(r, "success", "uploaded")
			}
		}
		mux.HandleFunc("GET /files/1/download", long)
		mux.HandleFunc("POST /files/1/upload", long)
		srv := httptest.NewServer(s.loadSession(mux))
		defer srv.Close()
		jar, _ := cookiejar.New(nil)
		c := &http.Client{Jar: jar}
		do := func(method, path string) string {
			t.Helper()
			req, _ := http.NewRequest(method, srv.URL+path, nil)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return string(b)
		}
		do("POST", "/set/1")
		for _, tc := range []struct{ method, path, want string }{
			{"GET", "/files/1/download", "2 "},
			{"POST", "/files/1/upload", "3 success:uploaded"},
		} {
			started, release = make(chan struct{}), make(chan struct{})
			done := make(chan string)
			go func() { done <- do(tc.method, tc.path) }()
			<-started
			v := map[string]string{"GET": "2", "POST": "3"}[tc.method]
			do("POST", "/set/"+v)
			close(release)
			<-done
			if got := do("GET", "/get"); got != tc.want {
				t.Errorf("idle timeout %v, after %s %s: session holds %q, want %q", idle, tc.method, tc.path, got, tc.want)
			}
		}
	}
}

// TestSignInOverAnotherDropsTheirMFA: a password sign-in in a browser
// where another user passed an MFA check must not carry that check over
// (it would satisfy step-up for the second user).
func TestSignInOverAnotherDropsTheirMFA(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	c := f.clientFrom("127.0.0.1")
	if st, _ := f.signIn(c, "user1", testPassword); st != http.StatusSeeOther {
		t.Fatalf("sign in user1: %d", st)
	}
	f.setMFAAt(c, time.Now())
	if st, _ := f.signIn(c, "auditor1", testPassword); st != http.StatusSeeOther {
		t.Fatalf("sign in auditor1: %d", st)
	}
	if at := f.mfaAt(c); !at.IsZero() {
		t.Errorf("auditor1's session holds user1's MFA check of %v", at)
	}
}

// mfaAt reads the MFA check time of c's web session.
func (f *fixture) mfaAt(c *http.Client) time.Time {
	f.t.Helper()
	u, _ := url.Parse(f.srv.URL)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == f.ui.Sessions.Cookie.Name {
			ctx, err := f.ui.Sessions.Load(context.Background(), ck.Value)
			if err != nil {
				f.t.Fatal(err)
			}
			if ms := f.ui.Sessions.GetInt64(ctx, sessionMFAAtKey); ms != 0 {
				return time.UnixMilli(ms)
			}
			return time.Time{}
		}
	}
	f.t.Fatal("the client has no web session")
	return time.Time{}
}
