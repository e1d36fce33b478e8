package ui

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/a-h/templ"
)

func render(t *testing.T, c templ.Component) string {
	t.Helper()
	var buf bytes.Buffer
	if err := c.Render(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// TestPagesEscapeAndLabel renders pages with hostile text and checks it is
// escaped, and that every input has a label.
func TestPagesEscapeAndLabel(t *testing.T) {
	evil := `<script>alert(1)</script>`
	admin := Page{Title: evil, Viewer: &Viewer{Name: evil, Role: "admin"}, Flash: Flash{Kind: "error", Message: evil}}
	pages := map[string]templ.Component{
		"home": Home(admin, HomeView{Total: 1, Q: evil, Back: "/?q=" + evil,
			Others: []ResourceCard{{ID: 1, Name: evil, Description: evil, Tags: []string{evil}, ConnectHref: "/connect/1", Match: true}},
			Recent: []RecentLink{{Name: evil, Href: "/connect/1"}}, Tags: []Option{{Value: evil, Label: evil}}}),
		"users":    Users(admin, UsersView{Users: []UserRow{{ID: 1, Name: evil, Groups: []string{evil}, CreatedAt: time.Now()}}}),
		"resource": ResourceForm(admin, ResourceFormView{ID: 1, Name: evil, Host: evil, Errors: Errors{"name": evil}, Grants: []GrantRow{{SubjectName: evil}}}),
		"audit":    Audit(admin, AuditView{Events: []AuditRow{{Actor: evil, Target: evil, Reason: evil, Details: evil, Time: time.Now()}}}),
		"account":  Account(admin, AccountView{Name: evil, NewToken: "kw_x", Tokens: []TokenRow{{Name: evil}}}),
		"signin":   SignIn(Page{}, SignInView{Username: evil, Error: evil, Next: evil}),
		"terminal": Terminal(admin, TerminalView{ResourceName: evil, WSPath: "/connect/1/ws"}),
	}
	for name, c := range pages {
		html := render(t, c)
		if strings.Contains(html, evil) {
			t.Errorf("%s: hostile text rendered unescaped", name)
		}
		if strings.Count(html, "<input") > 0 {
			// Every visible input is named by a label: by for= or by wrapping.
			for _, id := range []string{`id="username"`, `id="name"`, `id="host"`} {
				if strings.Contains(html, id) {
					bare := strings.TrimSuffix(strings.TrimPrefix(id, `id="`), `"`)
					if !strings.Contains(html, `for="`+bare+`"`) {
						t.Errorf("%s: input %s has no label", name, bare)
					}
				}
			}
		}
	}
	if html := render(t, Home(Page{Viewer: &Viewer{Role: "user"}}, HomeView{})); !strings.Contains(html, "Ask an administrator") {
		t.Error("empty home page does not say what to do")
	}
}
