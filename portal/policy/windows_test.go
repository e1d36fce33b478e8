package policy

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/portal/store"
)

func TestParseWindow(t *testing.T) {
	t.Parallel()
	wd := []time.Weekday{1, 2, 3, 4, 5}
	for _, tc := range []struct {
		in   string
		want store.PolicyWindow
		err  string // part of the error; "" for none
		text string // FormatWindow of the result
	}{
		{in: "Mon-Fri 09:00-17:00", want: store.PolicyWindow{Days: wd, From: 540, To: 1020}, text: "Mon–Fri 09:00–17:00"},
		{in: "  mon–fri   9:00 – 17:00 ", want: store.PolicyWindow{Days: wd, From: 540, To: 1020}, text: "Mon–Fri 09:00–17:00"},
		{in: "Monday - Friday 09:00 - 17:00", want: store.PolicyWindow{Days: wd, From: 540, To: 1020}, text: "Mon–Fri 09:00–17:00"},
		{in: "Sat, Sun 10:00-14:00", want: store.PolicyWindow{Days: []time.Weekday{6, 0}, From: 600, To: 840}, text: "Sat, Sun 10:00–14:00"},
		{in: "Mon,Wed,Fri 08:00-12:30", want: store.PolicyWindow{Days: []time.Weekday{1, 3, 5}, From: 480, To: 750}, text: "Mon, Wed, Fri 08:00–12:30"},
		{in: "Fri-Mon 22:00-06:00", want: store.PolicyWindow{Days: []time.Weekday{1, 5, 6, 0}, From: 1320, To: 360}, text: "Mon, Fri–Sun 22:00–06:00"},
		{in: "every day 00:00-24:00", want: store.PolicyWindow{Days: []time.Weekday{1, 2, 3, 4, 5, 6, 0}, From: 0, To: 1440}, text: "every day 00:00–24:00"},
		{in: "daily 22:00-00:00", want: store.PolicyWindow{Days: []time.Weekday{1, 2, 3, 4, 5, 6, 0}, From: 1320, To: 0}, text: "every day 22:00–00:00"},
		{in: "Mon-Fri", err: "write days and hours"},
		{in: "09:00-17:00", err: "write days and hours"},
		{in: "Mon-Fri 9-17", err: "not a time of day"},
		{in: "Mon-Fri 09:00-17:60", err: "not a time of day"},
		{in: "Mon-Fri 24:00-17:00", err: "opens between"},
		{in: "Mon-Fri 25:00-17:00", err: "not a time of day"},
		{in: "Mon-Fri 09:00-09:00", err: "is empty"},
		{in: "Mon-Fry 09:00-17:00", err: `"fry" is not a day`},
		{in: "Mon,,Tue 09:00-17:00", err: "not a day"},
		{in: "Mon 09:00-+7:00", err: "not a time of day"},
		{in: strings.Repeat("Mon,", 60) + " 09:00-17:00", err: "at most 200 characters"},
	} {
		w, err := ParseWindow(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want one with %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if !slices.Equal(w.Days, tc.want.Days) || w.From != tc.want.From || w.To != tc.want.To {
			t.Errorf("%q: %+v, want %+v", tc.in, w, tc.want)
		}
		if got := FormatWindow(w); got != tc.text {
			t.Errorf("%q: formats as %q, want %q", tc.in, got, tc.text)
		}
	}
	if _, err := ParseWindows("Mon 09:00-10:00\n\nTue 9-10"); err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("an error names its line: %v", err)
	}
	if _, err := ParseWindows(strings.Repeat("Mon 09:00-10:00\n", MaxWindows+1)); err == nil || !strings.Contains(err.Error(), "at most 20") {
		t.Errorf("too many windows: %v", err)
	}
}

func TestParseNetworksAndZones(t *testing.T) {
	t.Parallel()
	got, err := ParseNetworks("10.1.2.3/24, 192.0.2.7\n2001:db8::1/32", "::ffff:10.9.0.0/112")
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.1.2.0/24"), netip.MustParsePrefix("192.0.2.7/32"),
		netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("10.9.0.0/16")}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for _, bad := range []string{"10.0.0.0/33", "example.com", "fe80::1%eth0", "::ffff:0:0/80", "10.0.0.0/8/8"} {
		if _, err := ParseNetworks(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := ParseNetworks(strings.Repeat("10.0.0.1 ", MaxNetworks+1)); err == nil || !strings.Contains(err.Error(), "at most 100") {
		t.Errorf("too many networks: %v", err)
	}
	for _, ok := range []string{"UTC", "Europe/Paris", "America/Argentina/Buenos_Aires"} {
		if _, err := LoadZone(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "Local", "Mars/Olympus", "../../etc/passwd", "Europe/Paris\x00"} {
		if _, err := LoadZone(bad); err == nil {
			t.Errorf("zone %q accepted", bad)
		}
	}
}

// FuzzParseWindow: no input panics, and what parses formats into text
// that parses to the same window.
func FuzzParseWindow(f *testing.F) {
	for _, s := range []string{"Mon-Fri 09:00-17:00", "every day 22:00-06:00", "Sat, Sun 10:00 – 14:00", "Fri-Mon 0:00-24:00", "x y-z", "—— 1:1-1:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		w, err := ParseWindow(s)
		if err != nil {
			return
		}
		if len(w.Days) == 0 || w.From < 0 || w.From >= 1440 || w.To < 0 || w.To > 1440 || w.From == w.To {
			t.Fatalf("%q parsed to a bad window %+v", s, w)
		}
		again, err := ParseWindow(FormatWindow(w))
		if err != nil || !slices.Equal(again.Days, w.Days) || again.From != w.From || again.To != w.To {
			t.Fatalf("%q: %+v formats as %q, which parses to %+v, %v", s, w, FormatWindow(w), again, err)
		}
	})
}

// FuzzParseNetworks: no input panics, and every network parsed is masked,
// never IPv4-mapped, and parses back to itself.
func FuzzParseNetworks(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8", "::ffff:10.0.0.0/104, 2001:db8::/32", "1.2.3.4\n5.6.7.8", "::ffff:1.2.3.4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := ParseNetworks(s)
		if err != nil {
			return
		}
		for _, p := range ps {
			if p != p.Masked() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
				t.Fatalf("%q gave %v", s, p)
			}
			if again, err := ParseNetworks(p.String()); err != nil || len(again) != 1 || again[0] != p {
				t.Fatalf("%v parses back as %v, %v", p, again, err)
			}
		}
	})
}
