package httpui

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/store"
)

// shownResources returns the names of the resources the home page shows
// (its items without the hidden attribute), in page order.
func shownResources(t *testing.T, body string) []string {
	t.Helper()
	item := regexp.MustCompile(`<li( hidden)? data-search="[^"]*"[^>]*><article data-resource="([^"]*)"`)
	var out []string
	for _, m := range item.FindAllStringSubmatch(body, -1) {
		if m[1] == "" {
			out = append(out, m[2])
		}
	}
	return out
}

// TestHomeSearch: the GET search finds resources by name, description,
// host and tag, filters by protocol and tag, and keeps the others in the
// page hidden for the live filter.
func TestHomeSearch(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	user := f.users["user"]
	for _, r := range []store.Resource{
		{Name: "billing-db", Description: "Postgres for invoices", Protocol: "ssh", Host: "10.0.0.7", Port: 22, Login: "x", Tags: []string{"prod", "db"}},
		{Name: "win-desk", Description: "Accounting desktop", Protocol: "rdp", Host: "desk.example", Port: 3389, Tags: []string{"office"}},
		{Name: "lab-vnc", Protocol: "vnc", Host: "lab.example", Port: 5900, Tags: []string{"Prod"}},
	} {
		res, err := f.store.CreateResource(ctx, r, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.store.CreateGrant(ctx, res.ID, "user", user.ID); err != nil {
			t.Fatal(err)
		}
	}
	c := f.client("user")
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"", []string{"billing-db", "lab-vnc", "web", "win-desk"}},
		{"q=invoices", []string{"billing-db"}},          // description
		{"q=DESK.example", []string{"win-desk"}},        // host, any case
		{"q=office", []string{"win-desk"}},              // tag
		{"q=prod+billing", []string{"billing-db"}},      // every word
		{"tag=prod", []string{"billing-db", "lab-vnc"}}, // tags compare in any case
		{"protocol=rdp", []string{"win-desk"}},
		{"protocol=ssh&tag=prod", []string{"billing-db"}},
		{"q=nothing-like-this", nil},
		{"q=" + strings.Repeat("x", 5000), nil},
	} {
		resp := f.do(c, "GET", "/?"+tc.query, nil, nil)
		body := readBody(resp)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d", tc.query, resp.StatusCode)
		}
		if got := shownResources(t, body); !slices.Equal(got, tc.want) {
			t.Errorf("search %q shows %v, want %v", tc.query, got, tc.want)
		}
		// Every granted resource is in the page, for the live filter.
		if n := strings.Count(body, "<article data-resource="); n != 4 {
			t.Errorf("search %q: %d resources in the page, want 4", tc.query, n)
		}
		if tc.want == nil && !strings.Contains(body, "No resource matches this search.") {
			t.Errorf("search %q: no empty state", tc.query)
		}
	}
	body := readBody(f.do(c, "GET", "/", nil, nil))
	for _, want := range []string{`<form method="get" action="/" role="search"`, `<option value="rdp">RDP</option>`, `<option value="office">office</option>`, `aria-keyshortcuts="/"`} {
		if !strings.Contains(body, want) {
			t.Errorf("home page lacks %s", want)
		}
	}
}

// TestHomeFavouritesRecentAndView: favourites come first, recent
// connections are offered, the compact view is remembered.
func TestHomeFavouritesRecentAndView(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	user := f.users["user"]
	db, _ := f.store.CreateResource(ctx, store.Resource{Name: "alpha", Protocol: "ssh", Host: "h", Port: 22, Login: "x"}, nil)
	if _, err := f.store.CreateGrant(ctx, db.ID, "user", user.ID); err != nil {
		t.Fatal(err)
	}
	c := f.client("user")
	if got := shownResources(t, readBody(f.do(c, "GET", "/", nil, nil))); !slices.Equal(got, []string{"alpha", "web"}) {
		t.Fatalf("before: %v", got)
	}

	resp := f.do(c, "POST", fmt.Sprintf("/favourites/%d", f.resource.ID), url.Values{"favourite": {"on"}, "back": {"/?q=we"}}, nil)
	readBody(resp)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/?q=we" {
		t.Fatalf("favourite: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	body := readBody(f.do(c, "GET", "/", nil, nil))
	if got := shownResources(t, body); !slices.Equal(got, []string{"web", "alpha"}) {
		t.Errorf("favourite not first: %v", got)
	}
	if !strings.Contains(body, `id="favourites-heading"`) || !strings.Contains(body, "“web” is now a favourite") {
		t.Error("no Favourites heading or flash")
	}
	// Another site's address is never where the form returns.
	resp = f.do(c, "POST", fmt.Sprintf("/favourites/%d", f.resource.ID), url.Values{"favourite": {"off"}, "back": {"//evil.example/"}}, nil)
	readBody(resp)
	if loc := resp.Header.Get("Location"); loc != "/" {
		t.Errorf("unfavourite redirects to %q", loc)
	}
	if favs, _ := f.store.Favourites(ctx, user.ID); len(favs) != 0 {
		t.Errorf("favourites after unstarring: %v", favs)
	}

	// Recent: successful connections, newest first, only granted ones.
	for _, target := range []string{"alpha", "db", "web"} {
		f.audit.Record(ctx, audit.Event{Actor: user.Name, Action: audit.ActionConnect, Target: target, Outcome: audit.OutcomeSuccess})
	}
	f.audit.Record(ctx, audit.Event{Actor: user.Name, Action: audit.ActionConnect, Target: "alpha", Outcome: audit.OutcomeFailure})
	body = readBody(f.do(c, "GET", "/", nil, nil))
	recent := regexp.MustCompile(`data-recent="([^"]*)"`).FindAllStringSubmatch(body, -1)
	var names []string
	for _, m := range recent {
		names = append(names, m[1])
	}
	if !slices.Equal(names, []string{"web", "alpha"}) {
		t.Errorf("recent = %v, want [web alpha]", names)
	}

	// The compact list, remembered by the browser.
	resp = f.do(c, "GET", "/?view=list", nil, nil)
	if body := readBody(resp); !strings.Contains(body, `class="cards compact"`) || !strings.Contains(body, "Show as cards") {
		t.Error("?view=list does not show the compact list")
	}
	if body := readBody(f.do(c, "GET", "/", nil, nil)); !strings.Contains(body, `class="cards compact"`) {
		t.Error("the compact view was not remembered")
	}
	readBody(f.do(c, "GET", "/?view=cards", nil, nil))
	if body := readBody(f.do(c, "GET", "/", nil, nil)); strings.Contains(body, "cards compact") {
		t.Error("the cards view was not remembered")
	}
}

// TestHomeAdminWithoutGrants: an admin who granted nothing to themselves
// is told how, not to ask an administrator.
func TestHomeAdminWithoutGrants(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	body := readBody(f.do(f.client("admin"), "GET", "/", nil, nil))
	if strings.Contains(body, "Ask an administrator") || strings.Contains(body, "No resources are granted to you yet") {
		t.Error("the admin is told to ask an administrator")
	}
	want := fmt.Sprintf(`href="/admin/grants?subject=user:%d"`, f.users["admin"].ID)
	if !strings.Contains(body, "There are 2 resources, but none is granted to you.") || !strings.Contains(body, want) {
		t.Errorf("no hint to grant themselves access:\n%s", body)
	}
	// The link leads to the admin's own grants, with the form preset.
	body = readBody(f.do(f.client("admin"), "GET", strings.TrimSuffix(strings.TrimPrefix(want, `href="`), `"`), nil, nil))
	if !strings.Contains(body, fmt.Sprintf(`<option value="user:%d" selected>user: admin1</option>`, f.users["admin"].ID)) {
		t.Error("the grant form does not preselect the admin")
	}
	if !strings.Contains(body, "No grant matches these filters.") {
		t.Error("the filtered list does not say it is empty")
	}
}
