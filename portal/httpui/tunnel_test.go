package httpui

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/portal/store"
)

// TestNativeResources: tcp and network resources through the API and the
// form — what each must and must not have, with the errors on their
// fields in words, and the options that apply kept.
func TestNativeResources(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tok, _, _ := f.store.CreateToken(ctx, f.users["admin"].ID, "t", time.Hour)
	c := f.srv.Client()
	call := func(method, path, body string) (int, string) {
		req, _ := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, readBody(resp)
	}
	for _, tc := range []struct {
		name, body string
		status     int
		contains   []string
	}{
		{"tcp", `{"name":"pg","protocol":"tcp","host":"10.0.0.5","port":5432,"recording":"on","idle_timeout_minutes":5}`, 201,
			[]string{`"protocol":"tcp","host":"10.0.0.5","port":5432`, `"recording":"off"`}},
		{"tcp without port", `{"name":"pg2","protocol":"tcp","host":"10.0.0.5"}`, 422, []string{`"port":"Enter the port of the service`}},
		{"tcp without host", `{"name":"pg2","protocol":"tcp","port":5432}`, 422, []string{`"host":"Enter a host name`}},
		{"tcp with a login", `{"name":"pg2","protocol":"tcp","host":"h","port":5432,"login":"root"}`, 422, []string{`"login":"A TCP resource has no login`}},
		{"tcp with a password", `{"name":"pg2","protocol":"tcp","host":"h","port":5432,"password":"pw"}`, 422, []string{`"password":"A TCP resource keeps no credentials`}},
		{"network", `{"name":"lab","protocol":"network","networks":"10.20.0.0/16 tcp/5432,6379\n# db\n10.30.0.5 tcp/22","tags":["default"]}`, 201,
			[]string{`"protocol":"network","host":"","port":0`, `"networks":"10.20.0.0/16 tcp/5432,6379\n10.30.0.5 tcp/22"`}},
		{"network without rules", `{"name":"lab2","protocol":"network"}`, 422, []string{`"networks":"Enter at least one rule`}},
		{"network with bad rules", `{"name":"lab2","protocol":"network","networks":"10.20.0.0/16 tcp/5432\n10.300.0.0/16 tcp/1"}`, 422, []string{`"networks":"Line 2`}},
		{"network with a host", `{"name":"lab2","protocol":"network","host":"10.0.0.1","networks":"10.0.0.0/8 tcp/1"}`, 422, []string{`"host":"A network resource has no host`}},
		{"network with a port", `{"name":"lab2","protocol":"network","port":22,"networks":"10.0.0.0/8 tcp/1"}`, 422, []string{`"port":"A network resource has no port`}},
		{"network too long", `{"name":"lab2","protocol":"network","networks":"` + strings.Repeat("#", 17<<10) + `"}`, 422, []string{`"networks":"Keep the rules under`}},
		{"ssh with tunnel", `{"name":"box","protocol":"ssh","host":"10.0.0.9","login":"root","password":"pw","tunnel":true}`, 201, []string{`"tunnel":true`}},
		{"unknown protocol", `{"name":"x","protocol":"telnet","host":"h","port":23}`, 422, []string{`"protocol":"Choose SSH, RDP, VNC, TCP or network."`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := call("POST", "/api/v1/resources", tc.body)
			if status != tc.status {
				t.Fatalf("%d, want %d: %s", status, tc.status, body)
			}
			for _, want := range tc.contains {
				if !strings.Contains(body, want) {
					t.Errorf("answer lacks %s:\n%s", want, body)
				}
			}
		})
	}
	// An SSH resource turned into a tcp one keeps no credentials.
	status, body := call("PUT", fmt.Sprintf("/api/v1/resources/%d", f.resource.ID), `{"name":"web","protocol":"tcp","host":"127.0.0.1","port":1}`)
	if status != 200 || !strings.Contains(body, `"has_password":false`) {
		t.Fatalf("ssh to tcp: %d %s", status, body)
	}
	if sec, err := f.store.ResourceSecrets(ctx, f.resource.ID); err != nil || sec.Password != "" {
		t.Fatalf("credentials kept: %v %v", sec, err)
	}

	// The form: its fields, and the errors on them.
	admin := f.client("admin")
	resp := f.do(admin, "POST", "/admin/resources", url.Values{"name": {"lab3"}, "protocol": {"network"}, "networks": {"10.0.0.0/8 udp/53"}}, nil)
	page := readBody(resp)
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(page, "Line 1") || !strings.Contains(page, `id="networks"`) {
		t.Fatalf("bad rules in the form: %d\n%.2000s", resp.StatusCode, page)
	}
	resp = f.do(admin, "POST", "/admin/resources", url.Values{"name": {"lab3"}, "protocol": {"network"}, "networks": {"10.0.0.0/8 tcp/53"}, "port": {""}}, nil)
	if readBody(resp); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("network from the form: %d", resp.StatusCode)
	}
	lab3, err := f.store.ResourceByName(ctx, "lab3")
	if err != nil || lab3.Options.Networks != "10.0.0.0/8 tcp/53" || lab3.Port != 0 {
		t.Fatalf("stored %+v %v", lab3, err)
	}
	resp = f.do(admin, "GET", fmt.Sprintf("/admin/resources/%d", lab3.ID), nil, nil)
	page = readBody(resp)
	if !strings.Contains(page, "10.0.0.0/8 tcp/53</textarea>") || strings.Contains(page, "Test connection") {
		t.Fatalf("network edit page: networks shown %v, test offered %v", strings.Contains(page, "10.0.0.0/8 tcp/53"), strings.Contains(page, "Test connection"))
	}
	resp = f.do(admin, "POST", "/admin/resources/new", nil, nil)
	readBody(resp)
	page = readBody(f.do(admin, "GET", "/admin/resources/new", nil, nil))
	for _, want := range []string{`value="tcp"`, `value="network"`, `name="tunnel"`, "Native clients may tunnel to this port"} {
		if !strings.Contains(page, want) {
			t.Errorf("the new resource form lacks %s", want)
		}
	}
}

// TestHomeNativeResources: tcp and network resources show the command
// that opens them instead of a Connect button.
func TestHomeNativeResources(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, r := range []store.Resource{
		{Name: "pg", Protocol: store.ProtocolTCP, Host: "10.0.0.5", Port: 5432},
		{Name: "lab", Protocol: store.ProtocolNetwork, Options: store.Options{Networks: "10.20.0.0/16 tcp/5432"}},
	} {
		res, err := f.store.CreateResource(ctx, r, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.store.CreateGrant(ctx, res.ID, "user", f.users["user"].ID); err != nil {
			t.Fatal(err)
		}
	}
	page := readBody(f.do(f.client("user"), "GET", "/", nil, nil))
	for _, want := range []string{"keyway tunnel pg", "keyway proxy --socks 127.0.0.1:1080", "10.20.0.0/16 tcp/5432", `aria-label="Connect to web"`} {
		if !strings.Contains(page, want) {
			t.Errorf("home lacks %q", want)
		}
	}
	for _, absent := range []string{`aria-label="Connect to pg"`, `aria-label="Connect to lab"`} {
		if strings.Contains(page, absent) {
			t.Errorf("home offers %s", absent)
		}
	}
}

// TestClientStatus: a native client learns its user, the resources it
// may tunnel to or open a terminal on, its networks and its limits; an
// unknown credential is a 401 with the contract's JSON error.
func TestClientStatus(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	u := f.users["user"]
	for _, r := range []store.Resource{
		{Name: "pg", Protocol: store.ProtocolTCP, Host: "10.0.0.5", Port: 5432},
		{Name: "lab", Protocol: store.ProtocolNetwork, Options: store.Options{Networks: "10.20.0.0/16 tcp/5432"}},
		{Name: "desk", Protocol: "rdp", Host: "10.0.0.7", Port: 3389, Options: store.Options{Tunnel: true}},
		{Name: "hidden", Protocol: store.ProtocolTCP, Host: "10.0.0.5", Port: 1},
	} {
		res, err := f.store.CreateResource(ctx, r, nil)
		if err != nil {
			t.Fatal(err)
		}
		mode := store.GrantTerminal
		if r.Name == "hidden" {
			mode = store.GrantFiles // no session access: not listed
		}
		if _, err := f.store.CreateGrantMode(ctx, res.ID, "user", u.ID, mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.store.SetSetting(ctx, "client_streams_per_device", "7"); err != nil {
		t.Fatal(err)
	}
	tok, _, _ := f.store.CreateToken(ctx, u.ID, "t", time.Hour)
	get := func(tok string) (int, []byte) {
		req, _ := http.NewRequest("GET", f.srv.URL+"/api/v1/client/status", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := f.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, []byte(readBody(resp))
	}
	status, body := get(tok)
	if status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	var got clientStatus
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	want := clientStatus{User: "user1", Resources: []clientStatusRes{
		{Name: "desk", Protocol: "rdp", Host: "10.0.0.7", Port: 3389, Tunnel: true},
		{Name: "pg", Protocol: "tcp", Host: "10.0.0.5", Port: 5432, Tunnel: true},
		{Name: "web", Protocol: "ssh", Host: "127.0.0.1", Port: 1, Terminal: true},
	}, Networks: []clientStatusNetwork{{Name: "lab", Rules: "10.20.0.0/16 tcp/5432"}},
		Limits: clientStatusLimits{StreamsPerDevice: 7, StreamsPerUser: 512}}
	if g, w := fmt.Sprintf("%+v", got), fmt.Sprintf("%+v", want); g != w {
		t.Fatalf("status\n got %s\nwant %s", g, w)
	}
	if !strings.Contains(string(body), `"device":null`) {
		t.Errorf("a token's status has a device: %s", body)
	}
	for _, bad := range []string{"", "kw_forged"} {
		status, body := get(bad)
		if status != 401 || !strings.Contains(string(body), `"error":"invalid_credential"`) || !strings.Contains(string(body), `"message":"`) {
			t.Errorf("credential %q: %d %s", bad, status, body)
		}
	}
}

// FuzzTunnelTarget: any Keyway-Target is refused with words or parses to
// a target within bounds.
func FuzzTunnelTarget(f *testing.F) {
	for _, s := range []string{"resource/pg", "net/10.0.0.1:5432", "net/db.lab:22", "terminal/box?cols=80&rows=24&term=xterm-256color",
		"terminal/box?cols=0", "resource/", "x", "terminal/b?term=%0a", "net/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tt, err := parseTunnelTarget(s)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an error without words")
			}
			return
		}
		switch tt.kind {
		case "resource", "terminal":
			if !namePattern.MatchString(tt.name) {
				t.Fatalf("%q: name %q", s, tt.name)
			}
			if tt.kind == "terminal" && (tt.cols < 1 || tt.cols > maxTermSize || tt.rows < 1 || tt.rows > maxTermSize || !termPattern.MatchString(tt.term)) {
				t.Fatalf("%q: %+v", s, tt)
			}
		case "net":
			if tt.addr == "" || len(tt.addr) > maxTargetHeader {
				t.Fatalf("%q: %+v", s, tt)
			}
		default:
			t.Fatalf("%q: kind %q", s, tt.kind)
		}
	})
}
