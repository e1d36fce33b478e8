package sessions

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/clientinfo"
	"github.com/keyway-dev/keyway/portal/store"
)

// tcpFixture adds to a fixture the resources native clients reach: a tcp
// one, a network, an SSH resource with tunnels on, and one granted for
// files only.
type tcpFixture struct {
	*fixture
	tcp, net2, net1, tunnel, filesOnly store.Resource
}

func newTCPFixture(t *testing.T) *tcpFixture {
	t.Helper()
	ctx := context.Background()
	f := &tcpFixture{fixture: newFixture(t)}
	for _, r := range []struct {
		res  *store.Resource
		def  store.Resource
		mode store.GrantMode
	}{
		{&f.tcp, store.Resource{Name: "pg", Protocol: store.ProtocolTCP, Host: "127.0.0.1", Port: 5432}, store.GrantTerminal},
		// Named so that "lab-a" comes before "lab-b" in name order.
		{&f.net1, store.Resource{Name: "lab-a", Protocol: store.ProtocolNetwork, Options: store.Options{Networks: "10.20.0.0/16 tcp/5432,6379"}}, store.GrantBoth},
		{&f.net2, store.Resource{Name: "lab-b", Protocol: store.ProtocolNetwork, Options: store.Options{Networks: "10.30.0.0/16 tcp/22"}}, store.GrantTerminal},
		{&f.tunnel, store.Resource{Name: "box", Protocol: "ssh", Host: "127.0.0.1", Port: 22, Options: store.Options{Tunnel: true}}, store.GrantTerminal},
		{&f.filesOnly, store.Resource{Name: "files", Protocol: store.ProtocolTCP, Host: "127.0.0.1", Port: 1}, store.GrantFiles},
	} {
		var err error
		if *r.res, err = f.st.CreateResource(ctx, r.def, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := f.st.CreateGrantMode(ctx, r.res.ID, "user", f.user.ID, r.mode); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func (f *tcpFixture) admitTCP(resourceID int64, target string, device Device) *Refusal {
	_, err := f.m.Admit(context.Background(), Request{User: f.user, ResourceID: resourceID, Kind: KindTCP, Target: target,
		Device: device, Client: clientinfo.Info{Addr: "192.0.2.7"}})
	var ref *Refusal
	if err != nil && !errors.As(err, &ref) {
		panic(err)
	}
	return ref
}

// TestAdmitTCP: what a tcp stream may reach, and the words of each
// refusal. "no_gateway" means every check before the gateway passed
// (the fixture has no gateway).
func TestAdmitTCP(t *testing.T) {
	t.Parallel()
	f := newTCPFixture(t)
	for _, tc := range []struct {
		name     string
		resource int64
		target   string
		code     string
		words    string
	}{
		{"tcp resource", f.tcp.ID, "", "no_gateway", "No gateway"},
		{"tcp resource with a target", f.tcp.ID, "10.0.0.1:22", "bad_target", "pg has its own address"},
		{"ssh without tunnels", f.ssh.ID, "", "no_tunnel", "Native clients may not tunnel to ssh-true"},
		{"ssh with tunnels", f.tunnel.ID, "", "no_gateway", "No gateway"},
		{"no grant", f.ungranted.ID, "", "no_grant", msgNoAccess},
		{"no such resource", 99999, "", "no_grant", msgNoAccess},
		{"files-only grant", f.filesOnly.ID, "", "no_grant", msgNoAccess},
		{"network, allowed address", f.net1.ID, "10.20.3.4:5432", "no_gateway", "No gateway"},
		{"network, allowed port of a name", f.net1.ID, "db.lab:6379", "no_gateway", "No gateway"},
		{"network, address outside", f.net1.ID, "10.21.0.1:5432", "not_allowed", "The network lab-a does not allow 10.21.0.1 (port 5432)."},
		{"network, port outside", f.net1.ID, "10.20.0.1:22", "not_allowed", "The network lab-a does not allow 10.20.0.1 (port 22)."},
		{"network, name on a port outside", f.net1.ID, "db.lab:22", "not_allowed", "The network lab-a does not allow db.lab (port 22)."},
		{"network, no target", f.net1.ID, "", "bad_target", "No target address"},
		{"network, no port", f.net1.ID, "10.20.0.1", "bad_target", "The target \"10.20.0.1\" is not host:port"},
		{"network, port 0", f.net1.ID, "10.20.0.1:0", "bad_target", "The port of"},
		{"network, bad name", f.net1.ID, "a b:5432", "bad_target", "\"a b\" is neither"},
		{"network, too long", f.net1.ID, strings.Repeat("a", 300) + ":1", "bad_target", "The target is longer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := f.admitTCP(tc.resource, tc.target, Device{})
			if ref == nil || ref.Code != tc.code || !strings.HasPrefix(ref.Message, tc.words) {
				t.Fatalf("got %+v, want code %s and %q", ref, tc.code, tc.words)
			}
		})
	}
}

// TestStreamLimits: the limits from the settings bound a user's and a
// device's streams, browser sessions do not count against them nor they
// against MaxPerUser, and an ended stream frees its place.
func TestStreamLimits(t *testing.T) {
	t.Parallel()
	f := newTCPFixture(t)
	ctx := context.Background()
	if l := f.m.StreamLimits(ctx); l != (StreamLimits{DefaultStreamsPerDevice, DefaultStreamsPerUser}) {
		t.Fatalf("default limits %+v", l)
	}
	for k, v := range map[string]string{store.SettingClientStreamsPerDevice: "2", store.SettingClientStreamsPerUser: "3"} {
		if err := f.st.SetSetting(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	lim := f.m.StreamLimits(ctx)
	laptop, phone := Device{ID: 7, Name: "laptop"}, Device{ID: 8, Name: "phone"}
	// A full set of browser sessions does not stop a stream.
	for i := range MaxPerUser {
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		f.m.AddForTest(fmt.Sprint("S", i), f.user, f.ssh, KindTerminal, a)
	}
	if ref := f.admitTCP(f.tcp.ID, "", laptop); ref == nil || ref.Code != "no_gateway" {
		t.Fatalf("stream beside %d browser sessions: %+v", MaxPerUser, ref)
	}
	for range 2 {
		if !f.m.acquireStream(f.user.ID, laptop.ID, lim) {
			t.Fatal("stream under the limits refused")
		}
	}
	ref := f.admitTCP(f.tcp.ID, "", laptop)
	if ref == nil || ref.Code != "too_many_streams" || ref.Status != 429 || !strings.HasPrefix(ref.Message, "This device already has 2 connections") {
		t.Fatalf("third stream of a device: %+v", ref)
	}
	if ref := f.admitTCP(f.tcp.ID, "", phone); ref == nil || ref.Code != "no_gateway" {
		t.Fatalf("another device's stream: %+v", ref)
	}
	f.m.acquireStream(f.user.ID, phone.ID, lim)
	ref = f.admitTCP(f.tcp.ID, "", phone)
	if ref == nil || ref.Code != "too_many_streams" || !strings.HasPrefix(ref.Message, "Your account already has 3 connections") {
		t.Fatalf("fourth stream of a user: %+v", ref)
	}
	f.m.releaseStream(f.user.ID, laptop.ID)
	if ref := f.admitTCP(f.tcp.ID, "", phone); ref == nil || ref.Code != "no_gateway" {
		t.Fatalf("after one ended: %+v", ref)
	}
	evs, err := f.audit.Search(ctx, store.AuditFilter{Action: audit.ActionConnect})
	if err != nil {
		t.Fatal(err)
	}
	var limited int
	for _, ev := range evs {
		if ev.Details["code"] == "too_many_streams" {
			limited++
			if ev.Outcome != audit.OutcomeDenied || ev.Details["kind"] != "tcp" || ev.Details["device"] == "" {
				t.Errorf("refusal audited as %+v", ev)
			}
		}
	}
	if limited != 2 {
		t.Fatalf("%d too_many_streams events, want 2", limited)
	}
}

// TestStartNetworkRefusals: an address no granted network allows is
// refused with words naming it, before any gateway is asked; one a
// network allows goes on to the gateway.
func TestStartNetworkRefusals(t *testing.T) {
	t.Parallel()
	f := newTCPFixture(t)
	for _, tc := range []struct {
		target, code, words string
	}{
		{"10.99.0.1:5432", "not_allowed", "None of your networks allows 10.99.0.1 port 5432."},
		{"db.lab:80", "not_allowed", "None of your networks allows db.lab port 80."},
		{"10.30.1.1:22", "no_gateway", "No gateway"},
		{"10.20.1.1:6379", "no_gateway", "No gateway"},
		{"db.lab:22", "no_gateway", "No gateway"},
		{"[fe80::1%eth0]:22", "bad_target", "The address fe80::1%eth0 has a zone"},
		{"nonsense", "bad_target", "The target \"nonsense\" is not host:port"},
	} {
		t.Run(tc.target, func(t *testing.T) {
			_, err := f.m.StartNetwork(context.Background(), Request{User: f.user, Target: tc.target, Client: clientinfo.Info{Addr: "192.0.2.7"}})
			var ref *Refusal
			if !errors.As(err, &ref) || ref.Code != tc.code || !strings.HasPrefix(ref.Message, tc.words) {
				t.Fatalf("got %v (%+v), want %s %q", err, ref, tc.code, tc.words)
			}
		})
	}
}

// TestGuardEndsStreams: a stream ends when its device is revoked or its
// sign-in expires, or when the resource's tunnels are switched off; a
// transient error of the device check ends nothing.
func TestGuardEndsStreams(t *testing.T) {
	t.Parallel()
	f := newTCPFixture(t)
	ctx := context.Background()
	var deviceErr error
	f.m.DeviceUsable = func(context.Context, int64) error { return deviceErr }
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	s := f.m.AddForTest("T1", f.user, f.tunnel, KindTCP, a)
	s.Device = Device{ID: 3, Name: "laptop"}
	for _, tc := range []struct {
		name      string
		err       error
		tunnelOff bool
		code      string
		words     string
		wantErr   bool
	}{
		{"usable", nil, false, "", "", false},
		{"revoked", fmt.Errorf("device 3: %w", store.ErrDeviceRevoked), false, endAccessRevoked, "The device was revoked", false},
		{"deleted", fmt.Errorf("device 3: %w", store.ErrNotFound), false, endAccessRevoked, "The device was revoked", false},
		{"expired", fmt.Errorf("device 3: %w", store.ErrDeviceExpired), false, endSignedOut, "The device's sign-in expired", false},
		{"database down", errors.New("database is locked"), false, "", "", true},
		{"tunnels switched off", nil, true, endAccessRevoked, "Tunnels to box were switched off", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			deviceErr = tc.err
			res := f.tunnel
			res.Options.Tunnel = !tc.tunnelOff
			if err := f.st.UpdateResource(ctx, res, nil); err != nil {
				t.Fatal(err)
			}
			code, reason, err := f.m.endReason(ctx, s, map[int64]store.User{}, time.Now())
			if code != tc.code || !strings.HasPrefix(reason, tc.words) || (err != nil) != tc.wantErr {
				t.Fatalf("got %q %q %v, want %q %q", code, reason, err, tc.code, tc.words)
			}
		})
	}
}

// FuzzParseTarget: any string is either refused or gives a host and port
// in range that write back to a target that parses the same.
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"10.0.0.1:22", "[::1]:5432", "db.lab:6379", "a:0", "[fe80::1%x]:1", ":", "x:99999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		host, port, addr, err := ParseTarget(s)
		if err != nil {
			return
		}
		if port < 1 || port > 65535 || host == "" || len(host) > 253 {
			t.Fatalf("%q gave %q %d", s, host, port)
		}
		h2, p2, a2, err := ParseTarget(net.JoinHostPort(host, fmt.Sprint(port)))
		if err != nil || h2 != host || p2 != port || a2 != addr {
			t.Fatalf("%q: %q %d %v then %q %d %v %v", s, host, port, addr, h2, p2, a2, err)
		}
	})
}
