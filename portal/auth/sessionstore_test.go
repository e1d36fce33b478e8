package auth

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/keyway-dev/keyway/portal/store/storetest"
)

// TestSessionTokensHashed checks that the sessions table holds no cookie
// value, that the cookie still finds its session, that the stored key is
// no cookie, and that scs's Iterate can still end sessions.
func TestSessionTokensHashed(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, kind storetest.Kind) {
		st := storetest.OpenKind(t, kind)
		m, stop := NewSessions(st)
		t.Cleanup(stop)
		h := m.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/put" {
				m.Put(r.Context(), "user", "alice")
			}
			w.Write([]byte(m.GetString(r.Context(), "user")))
		}))
		get := func(path, cookie string) (string, string) {
			req := httptest.NewRequest("GET", "https://portal.test"+path, nil)
			if cookie != "" {
				req.AddCookie(&http.Cookie{Name: m.Cookie.Name, Value: cookie})
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			var set string
			for _, c := range rec.Result().Cookies() {
				if c.Name == m.Cookie.Name {
					set = c.Value
				}
			}
			return rec.Body.String(), set
		}
		_, token := get("/put", "")
		if token == "" {
			t.Fatal("no session cookie")
		}
		if who, _ := get("/", token); who != "alice" {
			t.Fatalf("the cookie did not find its session: %q", who)
		}

		rows, err := st.DB().Query(`SELECT token, data FROM sessions`)
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for rows.Next() {
			var key string
			var data []byte
			rows.Scan(&key, &data)
			if strings.Contains(key, token) || bytes.Contains(data, []byte(token)) {
				t.Errorf("the sessions table holds the cookie value %q", token)
			}
			keys = append(keys, key)
		}
		rows.Close()
		if len(keys) != 1 {
			t.Fatalf("%d sessions stored, want 1", len(keys))
		}
		// What the table holds signs nobody in.
		if who, _ := get("/", keys[0]); who != "" {
			t.Fatal("the stored key works as a cookie")
		}
		if who, _ := get("/", iteratedMark+keys[0]); who != "" {
			t.Fatal("a marked stored key works as a cookie")
		}

		// Iterate sees the session and can end it.
		n := 0
		err = m.Iterate(context.Background(), func(ctx context.Context) error {
			n++
			if m.GetString(ctx, "user") == "alice" {
				return m.Destroy(ctx)
			}
			return nil
		})
		if err != nil || n != 1 {
			t.Fatalf("iterate: %d sessions, %v", n, err)
		}
		if who, _ := get("/", token); who != "" {
			t.Fatal("a session destroyed through Iterate still signs in")
		}
	})
}

// TestMain stops the PostgreSQL server the session tests share.
func TestMain(m *testing.M) { storetest.Main(m) }
