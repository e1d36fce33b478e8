package ui

import (
	"regexp"
	"strings"
	"testing"
)

// TestPolicyPagesEscapeAndLabel renders the policy pages with hostile text
// and checks that it is escaped and that every field has a label.
func TestPolicyPagesEscapeAndLabel(t *testing.T) {
	t.Parallel()
	evil := `<script>alert(1)</script>`
	admin := Page{Title: evil, Viewer: &Viewer{Name: evil, Role: "admin"}, Section: "policies"}
	list := render(t, Policies(admin, PoliciesView{Policies: []PolicyRow{{ID: 1, Name: evil, Description: evil, AppliesTo: evil,
		Networks: []string{evil}, Windows: []string{evil}, TimeZone: evil, MaxSession: evil, MaxSessions: 2, Allows: []string{evil},
		Denies: []string{evil}}}}))
	form := render(t, PolicyForm(admin, PolicyFormView{ID: 1, Name: evil, Description: evil, Scope: "group:1",
		Groups: []Option{{Value: "group:1", Label: evil, Selected: true}}, Resources: []Option{{Value: "resource:1", Label: evil}},
		Networks: evil, Windows: evil, TimeZone: evil, MaxSession: evil, MaxSessions: evil, Errors: Errors{"windows": evil}}))
	for name, html := range map[string]string{"list": list, "form": form} {
		if strings.Contains(html, evil) {
			t.Errorf("%s: hostile text rendered unescaped", name)
		}
	}
	ids := regexp.MustCompile(`<(?:input|select|textarea) id="([^"]+)"`).FindAllStringSubmatch(form, -1)
	if len(ids) < 7 {
		t.Fatalf("found %d fields", len(ids))
	}
	for _, m := range ids {
		if !strings.Contains(form, `<label for="`+m[1]+`"`) {
			t.Errorf("field %s has no label", m[1])
		}
	}
	if !strings.Contains(form, `aria-errormessage="windows-error"`) || !strings.Contains(form, `id="windows-error"`) {
		t.Error("the windows error is not tied to its field")
	}
	if !strings.Contains(list, `href="/admin/policies" aria-current="page"`) {
		t.Error("the Manage menu does not mark Policies as the current page")
	}
	empty := render(t, Policies(admin, PoliciesView{}))
	if !strings.Contains(empty, "No policies yet") || !strings.Contains(empty, `href="/admin/policies/new"`) {
		t.Error("the empty list does not say what to do")
	}
}
