package app

import (
	"net/url"
	"testing"
)

// TestStepUpPage: the step-up address the portal sends is opened in a
// browser only when it is a page of that portal.
func TestStepUpPage(t *testing.T) {
	t.Parallel()
	const portal = "https://portal.example:8443"
	for _, tc := range []struct {
		page, want string
		ok         bool
	}{
		{portal + "/device/7/stepup?within=10", portal + "/device/7/stepup?within=10", true},
		{"/device/7/stepup?within=10", portal + "/device/7/stepup?within=10", true},
		{"", "", false},
		{"https://evil.example/device/7/stepup", "", false},
		{"http://portal.example:8443/device/7/stepup", "", false},
		{"https://portal.example/device/7/stepup", "", false},
		{"//evil.example/x", "", false},
		{"https://user@portal.example:8443/x", "", false},
		{"javascript:alert(1)", "", false},
	} {
		got, ok := stepUpPage(portal, tc.page)
		if ok != tc.ok || got != tc.want {
			t.Errorf("stepUpPage(%q) = %q, %v; want %q, %v", tc.page, got, ok, tc.want, tc.ok)
		}
	}
}

// FuzzStepUpPage: whatever the portal sends, a page accepted for the
// browser is on the portal's own scheme and host.
func FuzzStepUpPage(f *testing.F) {
	for _, s := range []string{"/device/7/stepup?within=10", "https://portal.example:8443/x", "//evil.example/", "https:evil", "\x00", "https://portal.example:8443@evil.example/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, page string) {
		const portal = "https://portal.example:8443"
		got, ok := stepUpPage(portal, page)
		if !ok {
			return
		}
		u, err := url.Parse(got)
		if err != nil || u.Scheme != "https" || u.Host != "portal.example:8443" || u.User != nil {
			t.Fatalf("stepUpPage(%q) accepted %q", page, got)
		}
	})
}
