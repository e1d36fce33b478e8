package httpui

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strconv"
	"testing"

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
