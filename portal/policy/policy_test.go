package policy

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/portal/store"
	"github.com/keyway-dev/keyway/portal/store/storetest"
)

func mustZone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := LoadZone(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func mustWindows(t *testing.T, lines ...string) []store.PolicyWindow {
	t.Helper()
	ws, err := ParseWindows(strings.Join(lines, "\n"))
	if err != nil {
		t.Fatal(err)
	}
	return ws
}

func mustNets(t *testing.T, nets ...string) []netip.Prefix {
	t.Helper()
	ps, err := ParseNetworks(nets...)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

// allowing is an enabled policy that allows everything, to be narrowed.
func allowing(name string) store.Policy {
	return store.Policy{Name: name, ScopeKind: store.ScopeEveryone, TimeZone: "UTC", Allow: store.AllowAll, Enabled: true}
}

// at is a connection of kind at now from addr.
func at(kind, addr string, now time.Time) Input {
	in := Input{User: store.User{ID: 1, Name: "alice"}, Resource: store.Resource{ID: 1, Name: "web"}, Kind: kind, Now: now}
	if addr != "" {
		in.ClientAddr = netip.MustParseAddr(addr)
	}
	return in
}

func refusal(t *testing.T, err error) *Refusal {
	t.Helper()
	var r *Refusal
	if err != nil && !errors.As(err, &r) {
		t.Fatalf("error %v is not a refusal", err)
	}
	return r
}

func TestNetworkEdges(t *testing.T) {
	t.Parallel()
	v4 := allowing("office")
	v4.Networks = mustNets(t, "10.1.2.0/24")
	v6 := allowing("lab")
	v6.Networks = mustNets(t, "2001:db8:1::/48")
	// An IPv4-mapped network as an admin may type it is the IPv4 one.
	mapped := allowing("mapped")
	mapped.Networks = mustNets(t, "::ffff:10.1.2.0/120")
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		p     store.Policy
		addr  string
		allow bool
	}{
		{v4, "10.1.1.255", false}, // last address before
		{v4, "10.1.2.0", true},    // first address in
		{v4, "10.1.2.255", true},  // last address in
		{v4, "10.1.3.0", false},   // first address after
		{v4, "::ffff:10.1.2.0", true},
		{v4, "::ffff:10.1.2.255", true},
		{v4, "::ffff:10.1.3.0", false},
		{v4, "2001:db8:1::1", false},
		{v4, "", false}, // address unknown: refused, not waved through
		{v6, "2001:db8:0:ffff:ffff:ffff:ffff:ffff", false},
		{v6, "2001:db8:1::", true},
		{v6, "2001:db8:1:ffff:ffff:ffff:ffff:ffff", true},
		{v6, "2001:db8:2::", false},
		{v6, "fe80::1%eth0", false},
		{v6, "2001:db8:1::7%eth0", true}, // a zone does not hide the address
		{v6, "10.1.2.3", false},
		{mapped, "10.1.2.9", true},
		{mapped, "::ffff:10.1.2.9", true},
		{mapped, "10.1.3.9", false},
	} {
		_, err := Evaluate([]store.Policy{tc.p}, at(KindTerminal, tc.addr, now))
		r := refusal(t, err)
		if got := r == nil; got != tc.allow {
			t.Errorf("%s from %q: allowed %v, want %v (%v)", tc.p.Name, tc.addr, got, tc.allow, err)
			continue
		}
		if r != nil && (r.Rule != RuleNetwork || r.Policy != tc.p.Name) {
			t.Errorf("%s from %q: refused by %s/%s", tc.p.Name, tc.addr, r.Policy, r.Rule)
		}
	}
	_, err := Evaluate([]store.Policy{v4}, at(KindTerminal, "192.0.2.7", now))
	if want := `Policy "office" allows connections from 10.1.2.0/24 only; you are connecting from 192.0.2.7.`; err == nil || err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
	_, err = Evaluate([]store.Policy{v4}, at(KindTerminal, "", now))
	if err == nil || !strings.Contains(err.Error(), "your address could not be determined") {
		t.Errorf("unknown address: %v", err)
	}
}

func TestWindowEdges(t *testing.T) {
	t.Parallel()
	paris := mustZone(t, "Europe/Paris")
	office := allowing("office hours")
	office.Windows, office.TimeZone = mustWindows(t, "Mon-Fri 09:00-17:00"), "Europe/Paris"
	night := allowing("night shift")
	night.Windows, night.TimeZone = mustWindows(t, "Fri 22:00-06:00"), "Europe/Paris"
	daily := allowing("daily")
	daily.Windows, daily.TimeZone = mustWindows(t, "every day 09:00-17:00"), "Europe/Paris"
	local := func(y int, mo time.Month, d, h, m, s int) time.Time { return time.Date(y, mo, d, h, m, s, 0, paris) }
	utc := func(y int, mo time.Month, d, h, m, s int) time.Time { return time.Date(y, mo, d, h, m, s, 0, time.UTC) }
	for _, tc := range []struct {
		name  string
		p     store.Policy
		now   time.Time
		allow bool
	}{
		// 2026-03-02 is a Monday.
		{"a second before it opens", office, local(2026, 3, 2, 8, 59, 59), false},
		{"the minute it opens", office, local(2026, 3, 2, 9, 0, 0), true},
		{"the last second", office, local(2026, 3, 2, 16, 59, 59), true},
		{"the minute it closes", office, local(2026, 3, 2, 17, 0, 0), false},
		{"Friday afternoon", office, local(2026, 3, 6, 16, 0, 0), true},
		{"Saturday", office, local(2026, 3, 7, 10, 0, 0), false},
		{"Sunday", office, local(2026, 3, 8, 10, 0, 0), false},
		{"the instant in another zone", office, utc(2026, 3, 2, 8, 0, 0), true}, // 09:00 in Paris (CET)
		{"an hour early in UTC terms", office, utc(2026, 3, 2, 7, 59, 59), false},
		// Over midnight: opens Friday 22:00, closes Saturday 06:00.
		{"before the night opens", night, local(2026, 3, 6, 21, 59, 59), false},
		{"the night opens", night, local(2026, 3, 6, 22, 0, 0), true},
		{"midnight", night, local(2026, 3, 7, 0, 0, 0), true},
		{"the night's last second", night, local(2026, 3, 7, 5, 59, 59), true},
		{"the night closes", night, local(2026, 3, 7, 6, 0, 0), false},
		{"Friday early morning is Thursday's night", night, local(2026, 3, 6, 3, 0, 0), false},
		{"Saturday night", night, local(2026, 3, 7, 23, 0, 0), false},
		// Summer time starts on 2026-03-29 at 01:00 UTC: 09:00 in Paris
		// is 08:00 UTC the day before and 07:00 UTC that day.
		{"DST eve, a second early", daily, utc(2026, 3, 28, 7, 59, 59), false},
		{"DST eve, opening", daily, utc(2026, 3, 28, 8, 0, 0), true},
		{"DST day, a second early", daily, utc(2026, 3, 29, 6, 59, 59), false},
		{"DST day, opening", daily, utc(2026, 3, 29, 7, 0, 0), true},
		{"DST day, closing", daily, utc(2026, 3, 29, 15, 0, 0), false},
		// Winter time returns on 2026-10-25: 09:00 is 08:00 UTC again.
		{"DST end, a second early", daily, utc(2026, 10, 25, 7, 59, 59), false},
		{"DST end, opening", daily, utc(2026, 10, 25, 8, 0, 0), true},
	} {
		_, err := Evaluate([]store.Policy{tc.p}, at(KindTerminal, "10.0.0.1", tc.now))
		r := refusal(t, err)
		if got := r == nil; got != tc.allow {
			t.Errorf("%s (%s): allowed %v, want %v", tc.name, tc.now.In(paris), got, tc.allow)
			continue
		}
		if r != nil && r.Rule != RuleTime {
			t.Errorf("%s: refused by rule %s", tc.name, r.Rule)
		}
	}
	_, err := Evaluate([]store.Policy{office}, at(KindTerminal, "10.0.0.1", local(2026, 3, 7, 10, 0, 0)))
	if want := `Policy "office hours" allows connections Mon–Fri 09:00–17:00 (Europe/Paris) only.`; err == nil || err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
}

func TestWindowsEnd(t *testing.T) {
	t.Parallel()
	paris := mustZone(t, "Europe/Paris")
	local := func(d, h, m int) time.Time { return time.Date(2026, 3, d, h, m, 0, 0, paris) }
	for _, tc := range []struct {
		name    string
		windows []string
		now     time.Time
		want    time.Time
	}{
		{"office day", []string{"Mon-Fri 09:00-17:00"}, local(2, 10, 0), local(2, 17, 0)},
		{"over midnight", []string{"Fri 22:00-06:00"}, local(6, 23, 0), local(7, 6, 0)},
		{"adjoining windows join", []string{"Fri 22:00-24:00", "Sat 00:00-06:00"}, local(6, 23, 0), local(7, 6, 0)},
		{"overlapping windows join", []string{"Mon 09:00-12:00", "Mon 11:00-14:00"}, local(2, 10, 0), local(2, 14, 0)},
		{"always", []string{"every day 00:00-24:00"}, local(2, 10, 0), time.Time{}},
		// Summer time: Sunday 29th 00:00 to 12:00 lasts 11 hours.
		{"DST day", []string{"Sun 00:00-12:00"}, local(29, 0, 30), time.Date(2026, 3, 29, 10, 0, 0, 0, time.UTC)},
	} {
		p := allowing(tc.name)
		p.Windows, p.TimeZone = mustWindows(t, tc.windows...), "Europe/Paris"
		eff, err := Evaluate([]store.Policy{p}, at(KindTerminal, "10.0.0.1", tc.now))
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if !eff.Until.Equal(tc.want) {
			t.Errorf("%s: until %v, want %v", tc.name, eff.Until, tc.want)
		}
	}
	// Of two policies, the earlier end holds.
	a, b := allowing("a"), allowing("b")
	a.Windows, a.TimeZone = mustWindows(t, "Mon 09:00-17:00"), "Europe/Paris"
	b.Windows, b.TimeZone = mustWindows(t, "Mon 09:00-12:00"), "Europe/Paris"
	eff, err := Evaluate([]store.Policy{a, b}, at(KindTerminal, "10.0.0.1", local(2, 10, 0)))
	if err != nil || !eff.Until.Equal(local(2, 12, 0)) {
		t.Fatalf("two policies: until %v, %v", eff.Until, err)
	}
}

func TestConcurrency(t *testing.T) {
	t.Parallel()
	p := allowing("two at a time")
	p.MaxSessionsPerUser = 2
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	for running, allow := range []bool{true, true, false, false} {
		in := at(KindDesktop, "10.0.0.1", now)
		in.Running = running
		_, err := Evaluate([]store.Policy{p}, in)
		r := refusal(t, err)
		if got := r == nil; got != allow {
			t.Errorf("session %d (%d running): allowed %v, want %v", running+1, running, got, allow)
		}
		if r != nil && r.Rule != RuleConcurrency {
			t.Errorf("session %d refused by %s", running+1, r.Rule)
		}
	}
	in := at(KindTerminal, "10.0.0.1", now)
	in.Running = 2
	_, err := Evaluate([]store.Policy{p}, in)
	if want := `Policy "two at a time" allows 2 sessions at a time; you have 2 running. End one and try again.`; err == nil || err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
}

func TestMaxSessionLastSecond(t *testing.T) {
	t.Parallel()
	hour, half, none := allowing("hour"), allowing("half"), allowing("none")
	hour.MaxSession, half.MaxSession = time.Hour, 30*time.Minute
	start := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		pols []store.Policy
		want time.Duration
	}{
		{nil, 0},
		{[]store.Policy{none}, 0},
		{[]store.Policy{hour}, time.Hour},
		{[]store.Policy{hour, none}, time.Hour},
		{[]store.Policy{hour, half, none}, 30 * time.Minute},
		{[]store.Policy{none, half, hour}, 30 * time.Minute},
	} {
		eff, err := Evaluate(tc.pols, at(KindTerminal, "10.0.0.1", start))
		if err != nil || eff.MaxSession != tc.want {
			t.Errorf("%d policies: max %v (%v), want %v", len(tc.pols), eff.MaxSession, err, tc.want)
		}
		if tc.want == 0 {
			if eff.Expired(start, start.Add(365*24*time.Hour)) {
				t.Errorf("no limit, yet expired")
			}
			continue
		}
		if eff.Expired(start, start.Add(tc.want-time.Second)) {
			t.Errorf("expired in its last second (%v)", tc.want)
		}
		if !eff.Expired(start, start.Add(tc.want)) {
			t.Errorf("not expired at %v", tc.want)
		}
	}
}

func TestPermissionsCombine(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	noUpload, noClipOut, off := allowing("a-no-upload"), allowing("b-no-clipboard-out"), allowing("c-disabled")
	noUpload.Allow.Upload = false
	noClipOut.Allow.ClipboardOut = false
	off.Allow, off.Enabled = store.PolicyAllow{}, false
	noDownload := allowing("d-no-download")
	noDownload.Allow.Download = false
	filesOnly := allowing("e-files-only")
	filesOnly.Allow.Terminal = false

	eff, err := Evaluate([]store.Policy{noUpload, noClipOut, off}, at(KindTerminal, "10.0.0.1", now))
	if err != nil {
		t.Fatal(err)
	}
	want := Effective{Terminal: true, Upload: false, Download: true, ClipboardIn: true, ClipboardOut: false, Applied: []string{"a-no-upload", "b-no-clipboard-out"}}
	if eff.Terminal != want.Terminal || eff.Upload != want.Upload || eff.Download != want.Download || eff.ClipboardIn != want.ClipboardIn ||
		eff.ClipboardOut != want.ClipboardOut || !slices.Equal(eff.Applied, want.Applied) {
		t.Fatalf("got %+v, want %+v", eff, want)
	}
	if eff, err := Evaluate(nil, at(KindTerminal, "10.0.0.1", now)); err != nil || !eff.Terminal || !eff.Upload || !eff.Download ||
		!eff.ClipboardIn || !eff.ClipboardOut || eff.Applied != nil || eff.MaxSession != 0 || !eff.Until.IsZero() {
		t.Fatalf("no policies: %+v, %v", eff, err)
	}

	for _, tc := range []struct {
		name string
		pols []store.Policy
		kind string
		rule string // "" allowed
	}{
		{"terminal under files-only", []store.Policy{filesOnly}, KindTerminal, RuleTerminal},
		{"desktop under files-only", []store.Policy{filesOnly}, KindDesktop, RuleTerminal},
		{"tunnel under files-only", []store.Policy{filesOnly}, KindTCP, RuleTerminal},
		{"files under files-only", []store.Policy{filesOnly}, KindFiles, ""},
		{"watch under files-only", []store.Policy{filesOnly}, KindWatch, ""},
		{"files with downloads only", []store.Policy{noUpload}, KindFiles, ""},
		{"files with uploads only", []store.Policy{noDownload}, KindFiles, ""},
		// Each allows one way; together neither.
		{"files with neither, from two policies", []store.Policy{noUpload, noDownload}, KindFiles, RuleFiles},
		{"disabled policy ignored", []store.Policy{off}, KindTerminal, ""},
	} {
		_, err := Evaluate(tc.pols, at(tc.kind, "10.0.0.1", now))
		r := refusal(t, err)
		switch {
		case tc.rule == "" && r != nil:
			t.Errorf("%s: refused: %v", tc.name, r)
		case tc.rule != "" && (r == nil || r.Rule != tc.rule):
			t.Errorf("%s: %v, want refused by %s", tc.name, err, tc.rule)
		}
	}
	_, err = Evaluate([]store.Policy{noUpload, noDownload}, at(KindFiles, "10.0.0.1", now))
	if want := `Policies "a-no-upload" and "d-no-download" together allow neither uploads nor downloads.`; err == nil || err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
	if _, err := Evaluate(nil, at("ftp", "10.0.0.1", now)); !errors.Is(err, ErrUnknownKind) {
		t.Errorf("unknown kind: %v", err)
	}
}

// TestFirstRefusalByName: of several refusing policies the first (the
// store lists them by name) is named, and the rule order within a policy
// is network, time, concurrency, permission.
func TestFirstRefusal(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 7, 10, 0, 0, 0, time.UTC) // Saturday
	p := allowing("all rules")
	p.Networks = mustNets(t, "10.0.0.0/8")
	p.Windows = mustWindows(t, "Mon-Fri 09:00-17:00")
	p.MaxSessionsPerUser = 1
	p.Allow.Terminal = false
	in := at(KindTerminal, "192.0.2.1", now)
	in.Running = 1
	for _, want := range []string{RuleNetwork, RuleTime, RuleConcurrency, RuleTerminal} {
		_, err := Evaluate([]store.Policy{p, allowing("z")}, in)
		r := refusal(t, err)
		if r == nil || r.Rule != want || r.Policy != "all rules" {
			t.Fatalf("got %v, want %s", err, want)
		}
		switch want {
		case RuleNetwork:
			in.ClientAddr = netip.MustParseAddr("10.9.9.9")
		case RuleTime:
			in.Now = now.AddDate(0, 0, 2) // Monday
		case RuleConcurrency:
			in.Running = 0
		}
	}
}

// TestCheckReadsApplicablePolicies runs the Engine on a real store: the
// policies for everyone, for the resource and for the user's groups apply;
// others and disabled ones do not.
func TestCheckReadsApplicablePolicies(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := storetest.Open(t)
	ops, _ := st.CreateGroup(ctx, store.Group{Name: "ops"})
	dev, _ := st.CreateGroup(ctx, store.Group{Name: "dev"})
	alice, err := st.CreateUser(ctx, store.User{Name: "alice", Role: store.RoleUser, Groups: []string{"ops"}}, "h")
	if err != nil {
		t.Fatal(err)
	}
	web, _ := st.CreateResource(ctx, store.Resource{Name: "web", Protocol: "ssh", Host: "127.0.0.1", Port: 22}, nil)
	db, _ := st.CreateResource(ctx, store.Resource{Name: "db", Protocol: "ssh", Host: "127.0.0.1", Port: 22}, nil)
	mk := func(name, kind string, id int64, enabled bool) {
		p := allowing(name)
		p.ScopeKind, p.ScopeID, p.Enabled = kind, id, enabled
		p.MaxSession = time.Hour
		if _, err := st.CreatePolicy(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	mk("everyone", store.ScopeEveryone, 0, true)
	mk("for-web", store.ScopeResource, web.ID, true)
	mk("for-db", store.ScopeResource, db.ID, true)
	mk("for-ops", store.ScopeGroup, ops.ID, true)
	mk("for-dev", store.ScopeGroup, dev.ID, true)
	mk("off", store.ScopeEveryone, 0, false)

	e := New(st)
	in := Input{User: alice, Resource: web, Kind: KindTerminal, ClientAddr: netip.MustParseAddr("127.0.0.1"), Now: time.Now()}
	eff, err := e.Check(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"everyone", "for-ops", "for-web"}; !slices.Equal(eff.Applied, want) {
		t.Fatalf("applied %v, want %v", eff.Applied, want)
	}
	// A refusal from the store's policies, then none once it is deleted.
	refuse := allowing("a-refuse")
	refuse.ScopeKind, refuse.ScopeID, refuse.Networks = store.ScopeGroup, ops.ID, mustNets(t, "192.0.2.0/24")
	rp, err := st.CreatePolicy(ctx, refuse)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Check(ctx, in); refusal(t, err) == nil || refusal(t, err).Policy != "a-refuse" {
		t.Fatalf("refusing group policy: %v", err)
	}
	st.DeletePolicy(ctx, rp.ID)
	if _, err := e.Check(ctx, in); err != nil {
		t.Fatalf("after delete: %v", err)
	}
	if _, err := e.Check(ctx, Input{User: alice, Resource: web, Kind: "x"}); !errors.Is(err, ErrUnknownKind) {
		t.Fatalf("unknown kind: %v", err)
	}
}

// TestCheckConcurrent: checks run side by side share the zone cache
// safely (go test -race).
func TestCheckConcurrent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := storetest.Open(t)
	u, _ := st.CreateUser(ctx, store.User{Name: "alice", Role: store.RoleUser}, "h")
	res, _ := st.CreateResource(ctx, store.Resource{Name: "web", Protocol: "ssh", Host: "127.0.0.1", Port: 22}, nil)
	for i, zone := range []string{"Europe/Paris", "America/New_York", "Asia/Tokyo"} {
		p := allowing(fmt.Sprint("p", i))
		p.Windows, p.TimeZone = mustWindows(t, "every day 00:00-24:00"), zone
		if _, err := st.CreatePolicy(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	e := New(st)
	errs := make(chan error, 16)
	for range cap(errs) {
		go func() {
			_, err := e.Check(ctx, Input{User: u, Resource: res, Kind: KindTerminal, ClientAddr: netip.MustParseAddr("127.0.0.1"), Now: time.Now()})
			errs <- err
		}()
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func TestStepUpStrictest(t *testing.T) {
	t.Parallel()
	fifteen, five, off, disabled := allowing("fifteen"), allowing("five"), allowing("off"), allowing("disabled")
	fifteen.StepUpMinutes, five.StepUpMinutes, disabled.StepUpMinutes = 15, 5, 1
	disabled.Enabled = false
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		pols []store.Policy
		want int
	}{
		{"no policy", nil, 0},
		{"off", []store.Policy{off}, 0},
		{"one", []store.Policy{fifteen, off}, 15},
		{"smallest wins", []store.Policy{fifteen, five, off}, 5},
		{"order does not matter", []store.Policy{five, off, fifteen}, 5},
		{"a disabled policy does not count", []store.Policy{fifteen, disabled}, 15},
	} {
		for _, kind := range []string{KindTerminal, KindDesktop, KindFiles, KindTCP, KindWatch} {
			eff, err := Evaluate(tc.pols, at(kind, "10.0.0.1", now))
			if err != nil || eff.StepUpMinutes != tc.want {
				t.Errorf("%s, %s: step-up %d (%v), want %d", tc.name, kind, eff.StepUpMinutes, err, tc.want)
			}
		}
	}
	for _, tc := range []struct{ a, b, want int }{
		{0, 0, 0}, {0, 10, 10}, {10, 0, 10}, {3, 10, 3}, {10, 3, 3}, {-1, 4, 4}, {4, -1, 4}, {-1, -1, 0},
	} {
		if got := StricterStepUp(tc.a, tc.b); got != tc.want {
			t.Errorf("StricterStepUp(%d, %d) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}
