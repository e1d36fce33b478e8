package httpui

import (
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/store"
	"github.com/keyway-dev/keyway/web/ui"
)

// Limits of the home page's search.
const (
	// maxSearchLen bounds the search text and filters taken from the URL.
	maxSearchLen = 200
	// recentLinks is how many recently used resources the page offers.
	recentLinks = 5
)

// viewCookie remembers the home page's view ("list" for the compact list)
// in the browser, so it works without script and without a database row.
const viewCookie = "keyway_view"

// homeSearch is the home page's search: lower-case words that must all
// occur, a protocol and a tag.
type homeSearch struct {
	words    []string
	protocol string
	tag      string
}

func parseHomeSearch(q url.Values) (homeSearch, string) {
	text := q.Get("q")
	if len(text) > maxSearchLen {
		text = text[:maxSearchLen]
	}
	text = strings.TrimSpace(text)
	return homeSearch{
		words:    strings.Fields(strings.ToLower(text)),
		protocol: strings.ToLower(bounded(q.Get("protocol"))),
		tag:      strings.ToLower(bounded(q.Get("tag"))),
	}, text
}

func bounded(s string) string {
	if len(s) > maxSearchLen {
		return ""
	}
	return strings.TrimSpace(s)
}

// matches reports whether c passes the search; app.ts filters the same way.
func (h homeSearch) matches(c ui.ResourceCard) bool {
	if h.protocol != "" && c.Protocol != h.protocol {
		return false
	}
	if h.tag != "" && !slices.ContainsFunc(c.Tags, func(t string) bool { return strings.ToLower(t) == h.tag }) {
		return false
	}
	text := c.Search()
	for _, w := range h.words {
		if !strings.Contains(text, w) {
			return false
		}
	}
	return true
}

func (s *Server) home(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	u, _ := currentUser(r)
	rs, err := s.Store.ResourcesForUser(ctx, u.ID)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	access, err := s.Store.AccessByResource(ctx, u.ID)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	favs, err := s.Store.Favourites(ctx, u.ID)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	recent, err := s.Store.RecentTargets(ctx, u.Name, audit.ActionConnect, recentLinks)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	stepUp, err := s.stepUpByResource(ctx, u)
	if err != nil {
		s.serverError(w, r, err)
		return
	}

	q := r.URL.Query()
	search, text := parseHomeSearch(q)
	v := ui.HomeView{Total: len(rs), Q: text, Protocol: search.protocol, Tag: search.tag}
	v.Compact = s.homeView(w, r) == "list"
	back := url.Values{}
	for k, val := range map[string]string{"q": text, "protocol": search.protocol, "tag": search.tag} {
		if val != "" {
			back.Set(k, val)
		}
	}
	v.Back = "/"
	if len(back) > 0 {
		v.Back = "/?" + back.Encode()
	}
	view := url.Values{}
	for k, val := range back {
		view[k] = val
	}
	view.Set("view", map[bool]string{true: "cards", false: "list"}[v.Compact])
	v.ViewHref = "/?" + view.Encode()

	byName := map[string]ui.ResourceCard{}
	protocols, tags := map[string]bool{}, map[string]string{}
	for _, res := range rs {
		card := ui.ResourceCard{
			ID: res.ID, Name: res.Name, Description: res.Description, Protocol: res.Protocol,
			Host: res.Host, Address: resourceAddress(res), Tags: res.Tags, Favourite: favs[res.ID],
			FavouriteHref: fmt.Sprintf("/favourites/%d", res.ID), StepUpMinutes: stepUp(res),
		}
		switch {
		case !access[res.ID].Terminal:
		case res.Protocol == store.ProtocolTCP:
			// Only the keyway client reaches these: no browser session.
			card.NativeCommand = "keyway tunnel " + res.Name
		case res.Protocol == store.ProtocolNetwork:
			card.NativeCommand = "keyway proxy --socks 127.0.0.1:1080"
		default:
			card.ConnectHref = fmt.Sprintf("/connect/%d", res.ID)
		}
		if access[res.ID].Files && res.Protocol == "ssh" {
			card.FilesHref = fmt.Sprintf("/files/%d", res.ID)
		}
		card.Match = search.matches(card)
		if card.Match {
			v.Matches++
		}
		protocols[res.Protocol] = true
		for _, t := range res.Tags {
			tags[strings.ToLower(t)] = t
		}
		byName[strings.ToLower(res.Name)] = card
		if card.Favourite {
			v.Favourites = append(v.Favourites, card)
		} else {
			v.Others = append(v.Others, card)
		}
	}
	for _, name := range recent {
		if c, ok := byName[name]; ok && c.Href() != "" {
			v.Recent = append(v.Recent, ui.RecentLink{Name: c.Name, Href: c.Href()})
		}
	}
	for _, p := range slices.Sorted(maps.Keys(protocols)) {
		v.Protocols = append(v.Protocols, ui.Option{Value: p, Label: strings.ToUpper(p), Selected: p == search.protocol})
	}
	for _, t := range slices.Sorted(maps.Keys(tags)) {
		v.Tags = append(v.Tags, ui.Option{Value: t, Label: tags[t], Selected: t == search.tag})
	}
	if len(rs) == 0 && u.Role == store.RoleAdmin {
		all, err := s.Store.ListResources(ctx)
		if err != nil {
			s.serverError(w, r, err)
			return
		}
		v.AllResources = len(all)
		v.GrantsHref = fmt.Sprintf("/admin/grants?subject=user:%d", u.ID)
	}
	s.render(w, r, http.StatusOK, ui.Home(s.page(r, "Your resources", "home"), v))
}

// homeView returns the view the viewer chose: ?view= switches it and is
// remembered in a cookie for a year.
func (s *Server) homeView(w http.ResponseWriter, r *http.Request) string {
	if v := r.URL.Query().Get("view"); v == "list" || v == "cards" {
		http.SetCookie(w, &http.Cookie{Name: viewCookie, Value: v, Path: "/", MaxAge: int((365 * 24 * time.Hour).Seconds()),
			Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
		return v
	}
	if c, err := r.Cookie(viewCookie); err == nil && c.Value == "list" {
		return "list"
	}
	return "cards"
}

// favourite stars or unstars a resource the viewer may use, then returns
// to the page the form came from.
func (s *Server) favourite(w http.ResponseWriter, r *http.Request) {
	u, _ := currentUser(r)
	res, ok := s.grantedResource(w, r, u)
	if !ok {
		return
	}
	if err := r.ParseForm(); err != nil {
		s.serverError(w, r, err)
		return
	}
	on := r.PostForm.Get("favourite") != "off"
	if err := s.Store.SetFavourite(r.Context(), u.ID, res.ID, on); err != nil {
		s.serverError(w, r, err)
		return
	}
	if on {
		s.setFlash(r, "success", fmt.Sprintf("%s is now a favourite: it is listed first.", quote(res.Name)))
	} else {
		s.setFlash(r, "success", fmt.Sprintf("%s is no longer a favourite.", quote(res.Name)))
	}
	http.Redirect(w, r, safeNext(r.PostForm.Get("back")), http.StatusSeeOther)
}

// quote puts a name that users chose in quotation marks, so that a name
// such as "was" or one ending in a full stop reads as a name.
func quote(name string) string { return "“" + name + "”" }
