package httpui

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/store"
)

// TestMovedResourceDropsCredentials checks that stored credentials never
// follow a resource to a new host or port, through the form and the API,
// unless they are entered again.
func TestMovedResourceDropsCredentials(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	admin := f.client("admin")
	tok, _, err := f.store.CreateToken(ctx, f.users["admin"].ID, "t", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	viaForm := func(id int64, v url.Values) (int, string) {
		resp := f.do(admin, "POST", fmt.Sprintf("/admin/resources/%d", id), v, nil)
		return resp.StatusCode, readBody(resp)
	}
	viaAPI := func(id int64, v url.Values) (int, string) {
		body := fmt.Sprintf(`{"name":%q,"protocol":%q,"host":%q,"port":%s,"login":%q,"password":%q}`,
			v.Get("name"), v.Get("protocol"), v.Get("host"), v.Get("port"), v.Get("login"), v.Get("password"))
		req, _ := http.NewRequest("PUT", f.srv.URL+fmt.Sprintf("/api/v1/resources/%d", id), strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := f.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, readBody(resp)
	}
	for _, via := range []struct {
		name string
		send func(int64, url.Values) (int, string)
		ok   int
	}{{"form", viaForm, http.StatusSeeOther}, {"api", viaAPI, http.StatusOK}} {
		for i, tc := range []struct {
			name         string
			protocol     string
			host         string
			port         string
			password     string
			status       int    // 0: via.ok
			message      string // in the answer
			wantPassword string // what is stored afterwards
			wantKey      bool
		}{
			{"same address keeps the credentials", "ssh", "box.example", "22", "", 0, "", "old-secret", true},
			{"host case is the same host", "ssh", "BOX.Example", "22", "", 0, "", "old-secret", true},
			{"new host without credentials is refused", "ssh", "evil.example", "22", "", http.StatusUnprocessableEntity, "enter them again", "old-secret", true},
			{"new port without credentials is refused", "ssh", "box.example", "2222", "", http.StatusUnprocessableEntity, "enter them again", "old-secret", true},
			{"new host with a new password drops the key", "ssh", "evil.example", "22", "new-secret", 0, "", "new-secret", false},
			{"VNC needs no password, so a new port clears it", "vnc", "box.example", "5901", "", 0, "", "", false},
		} {
			t.Run(via.name+"/"+tc.name, func(t *testing.T) {
				res, err := f.store.CreateResource(ctx, store.Resource{Name: fmt.Sprintf("mv-%s-%d", via.name, i), Protocol: tc.protocol,
					Host: "box.example", Port: map[string]int{"ssh": 22, "vnc": 5900}[tc.protocol], Login: "root"},
					&store.Secrets{Password: "old-secret", PrivateKey: map[bool]string{true: testPrivateKey(t), false: ""}[tc.protocol == "ssh"]})
				if err != nil {
					t.Fatal(err)
				}
				status, body := via.send(res.ID, url.Values{"name": {res.Name}, "protocol": {tc.protocol}, "host": {tc.host},
					"port": {tc.port}, "login": {"root"}, "password": {tc.password}})
				want := tc.status
				if want == 0 {
					want = via.ok
				}
				if status != want || !strings.Contains(body, tc.message) {
					t.Fatalf("status %d, want %d with %q: %.300s", status, want, tc.message, body)
				}
				got, err := f.store.ResourceSecrets(ctx, res.ID)
				if err != nil {
					t.Fatal(err)
				}
				if got.Password != tc.wantPassword || (got.PrivateKey != "") != tc.wantKey {
					t.Fatalf("stored password %q, key %t; want %q, %t", got.Password, got.PrivateKey != "", tc.wantPassword, tc.wantKey)
				}
			})
		}
	}
	// The form says so before an admin finds out.
	resp := f.do(admin, "GET", fmt.Sprintf("/admin/resources/%d", f.resource.ID), nil, nil)
	if body := readBody(resp); !strings.Contains(body, "Changing the host or port removes the stored password") {
		t.Error("the edit form does not say that moving a resource drops its credentials")
	}
	// The update's audit event names the old address and what was cleared.
	evs, err := f.store.SearchAudit(ctx, store.AuditFilter{Action: audit.ActionResourceUpdate})
	if err != nil {
		t.Fatal(err)
	}
	var cleared bool
	for _, ev := range evs {
		if strings.Contains(ev.Details["credentials"], "cleared (host or port changed)") && ev.Details["previous_address"] == "box.example:5900" {
			cleared = true
		}
	}
	if !cleared {
		t.Error("no audit event says the credentials were cleared by a move")
	}
}

func testPrivateKey(t *testing.T) string {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(key, "")
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(block))
}

// TestConnectionTestAuditsTarget checks that Test connection records where
// it sent the stored credentials, also when it fails before a gateway.
func TestConnectionTestAuditsTarget(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	admin := f.client("admin")
	resp := f.do(admin, "POST", fmt.Sprintf("/admin/resources/%d/test", f.resource.ID), url.Values{}, nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("test connection: %d", resp.StatusCode)
	}
	evs, err := f.store.SearchAudit(ctx, store.AuditFilter{Action: audit.ActionResourceTest})
	if err != nil || len(evs) != 1 {
		t.Fatalf("resource.test events: %v, %v", evs, err)
	}
	d := evs[0].Details
	if want := "127.0.0.1:" + strconv.Itoa(f.resource.Port); d["target"] != want || d["credentials"] != "password" || d["host_key"] != "none pinned" {
		t.Fatalf("audit details %v, want target %s, credentials password, host_key none pinned", d, want)
	}
}
