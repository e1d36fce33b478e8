package oidc

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseConfig(t *testing.T) {
	t.Parallel()
	ok := `{"issuer_url":"https://login.example.com","client_id":"keyway","client_secret":"s"}`
	c, err := ParseConfig([]byte(ok))
	if err != nil {
		t.Fatal(err)
	}
	if c.UsernameClaim != "preferred_username" || c.GroupsClaim != "groups" || len(c.Scopes) == 0 {
		t.Errorf("defaults not applied: %+v", c)
	}
	for _, tc := range []struct{ json, field string }{
		{`{"issuer_url":"","client_id":"k"}`, "issuer_url"},
		{`{"issuer_url":"http://login.example.com","client_id":"k"}`, "issuer_url"},
		{`{"issuer_url":"ftp://login.example.com","client_id":"k"}`, "issuer_url"},
		{`{"issuer_url":"https://u:p@login.example.com","client_id":"k"}`, "issuer_url"},
		{`{"issuer_url":"https://login.example.com?x=1","client_id":"k"}`, "issuer_url"},
		{`{"issuer_url":"https://login.example.com"}`, "client_id"},
		{`{"issuer_url":"https://login.example.com","client_id":"k\n"}`, "client_id"},
		{`{"issuer_url":"https://login.example.com","client_id":"k","scopes":["a b"]}`, "scopes"},
		{`{"issuer_url":"https://login.example.com","client_id":"k","username_claim":"a b"}`, "username_claim"},
		{`{"issuer_url":"https://login.example.com","client_id":"k","groups_claim":"` + strings.Repeat("g", 200) + `"}`, "groups_claim"},
		{`{"issuer_url":"https://login.example.com","client_id":"k","allowed_email_domains":["not a domain"]}`, "allowed_email_domains"},
		{`{"issuer_url":"https://login.example.com","client_id":"k","ca_bundle":"nope"}`, "ca_bundle"},
	} {
		_, err := ParseConfig([]byte(tc.json))
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("%s: err = %v, want one about %s", tc.json, err, tc.field)
		}
	}
	for _, bad := range []string{`{"issuer_url":"https://x","client_id":"k","other":1}`, `[`, strings.Repeat(" ", maxConfigSize+1)} {
		if _, err := ParseConfig([]byte(bad)); err == nil {
			t.Errorf("%.40q accepted", bad)
		}
	}
	if _, err := ParseConfig([]byte(`{"issuer_url":"http://127.0.0.1:5556/dex","client_id":"k"}`)); err != nil {
		t.Errorf("http on loopback refused: %v", err)
	}
}

func TestEmailAllowed(t *testing.T) {
	t.Parallel()
	c := Config{AllowedEmailDomains: []string{"@Example.com", "corp.example"}}.withDefaults()
	for email, want := range map[string]bool{"a@example.com": true, "a@EXAMPLE.COM": true, "a@corp.example": true,
		"a@evil.example.com": false, "a@example.com.evil": false, "example.com": false, "": false} {
		if got := c.EmailAllowed(email); got != want {
			t.Errorf("EmailAllowed(%q) = %v", email, got)
		}
	}
	if !(Config{}).EmailAllowed("anyone@anywhere") {
		t.Error("no domains set: everyone should be allowed")
	}
}

func TestExtractEmailDomain(t *testing.T) {
	t.Parallel()
	c := Config{IssuerURL: "https://x", ClientID: "k", AllowedEmailDomains: []string{"example.com"}}.withDefaults()
	base := map[string]json.RawMessage{"sub": json.RawMessage(`"1"`), "preferred_username": json.RawMessage(`"alice"`)}
	for name, tc := range map[string]struct {
		email, verified string
		ok              bool
	}{
		"allowed":           {`"a@example.com"`, ``, true},
		"allowed, verified": {`"a@example.com"`, `true`, true},
		"not verified":      {`"a@example.com"`, `false`, false},
		"other domain":      {`"a@other.com"`, ``, false},
		"no e-mail":         {``, ``, false},
	} {
		cl := map[string]json.RawMessage{}
		for k, v := range base {
			cl[k] = v
		}
		if tc.email != "" {
			cl["email"] = json.RawMessage(tc.email)
		}
		if tc.verified != "" {
			cl["email_verified"] = json.RawMessage(tc.verified)
		}
		_, err := extract(cl, c)
		var ref *Refusal
		if tc.ok != (err == nil) || (!tc.ok && (!errors.As(err, &ref) || ref.Reason != ReasonEmailDomain)) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

func TestParseGroups(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want string
		err  bool
	}{
		{``, "", false},
		{`null`, "", false},
		{`"ops"`, "ops", false},
		{`["ops","dev"," ops ",""]`, "ops,dev", false},
		{`[]`, "", false},
		{`[1]`, "", true},
		{`{"a":1}`, "", true},
		{`42`, "", true},
		{`["a\u0000b"]`, "", true},
		{`["` + strings.Repeat("g", maxGroup+1) + `"]`, "", true},
		{`[` + strings.Repeat(`"g",`, MaxGroups) + `"g"]`, "", true},
		{`["a"`, "", true},
	} {
		got, err := ParseGroups(json.RawMessage(tc.in))
		if (err != nil) != tc.err || strings.Join(got, ",") != tc.want {
			t.Errorf("ParseGroups(%.40s) = %q, %v", tc.in, got, err)
		}
	}
}

func FuzzParseGroups(f *testing.F) {
	for _, s := range []string{`"ops"`, `["a","b"]`, `null`, `[1]`, `["a"`, `[` + strings.Repeat(`"g",`, 10) + `"g"]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		gs, err := ParseGroups(b)
		if err != nil {
			return
		}
		if len(gs) > MaxGroups {
			t.Fatalf("%d groups kept", len(gs))
		}
		for _, g := range gs {
			if g == "" || len(g) > maxGroup || boundedText(g, maxGroup) != nil {
				t.Fatalf("group %q kept", g)
			}
		}
	})
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{"issuer_url":"https://login.example.com","client_id":"keyway","client_secret":"s","allowed_email_domains":["example.com"]}`))
	f.Add([]byte(`{"issuer_url":"http://127.0.0.1:1","client_id":"k","scopes":["a"],"groups_claim":"roles"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err != nil {
			return
		}
		// What is accepted survives the store's round trip unchanged.
		c2, err := ParseConfig(c.Marshal())
		if err != nil {
			t.Fatalf("re-parse %s: %v", c.Marshal(), err)
		}
		if string(c2.Marshal()) != string(c.Marshal()) {
			t.Fatalf("round trip changed %s into %s", c.Marshal(), c2.Marshal())
		}
	})
}

func TestPendingList(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_000_000, 0)
	var l PendingList
	for i := range maxPending + 3 {
		l = l.Add(Pending{State: string(rune('a' + i)), Expires: now.Add(PendingTTL).UnixMilli()}, now)
	}
	if len(l) != maxPending {
		t.Fatalf("%d kept, want %d", len(l), maxPending)
	}
	if _, _, ok := l.Take("a", now); ok {
		t.Error("the oldest was not dropped")
	}
	l = DecodePending(l.Encode())
	p, l, ok := l.Take("d", now)
	if !ok || p.State != "d" {
		t.Fatal("state d not found")
	}
	if _, _, ok := l.Take("d", now); ok {
		t.Error("state d works twice")
	}
	if _, _, ok := l.Take("e", now.Add(PendingTTL)); ok {
		t.Error("an expired state works")
	}
	if _, _, ok := l.Take("", now); ok {
		t.Error("an empty state matched")
	}
	for _, bad := range []string{"", "{", `[{"s":1}]`, strings.Repeat("x", maxPendingJSON+1)} {
		if DecodePending(bad) != nil {
			t.Errorf("DecodePending(%.20q) not empty", bad)
		}
	}
}

// FuzzExtract feeds arbitrary claims (as a provider's ID token or
// userinfo would carry them) to the claim extraction.
func FuzzExtract(f *testing.F) {
	f.Add([]byte(`{"sub":"1","preferred_username":"alice","name":"A","email":"a@example.com","groups":["ops"]}`))
	f.Add([]byte(`{"sub":"1","preferred_username":"alice","groups":"ops","email_verified":false}`))
	f.Add([]byte(`{"sub":1,"preferred_username":null}`))
	c := Config{IssuerURL: "https://x", ClientID: "k", AllowedEmailDomains: []string{"example.com"}}.withDefaults()
	f.Fuzz(func(t *testing.T, b []byte) {
		var claims map[string]json.RawMessage
		if json.Unmarshal(b, &claims) != nil {
			return
		}
		id, err := extract(claims, c)
		if err != nil {
			var ref *Refusal
			if !errors.As(err, &ref) {
				t.Fatalf("error %v is not a refusal", err)
			}
			return
		}
		if id.Subject == "" || id.Username == "" || !c.EmailAllowed(id.Email) || len(id.Groups) > MaxGroups {
			t.Fatalf("accepted %+v", id)
		}
		for _, s := range []string{id.Subject, id.Username, id.DisplayName, id.Email} {
			if boundedText(s, maxClaimValue) != nil {
				t.Fatalf("unbounded value %q kept", s)
			}
		}
		_ = ShowClaims(claims)
	})
}

func FuzzDecodePending(f *testing.F) {
	f.Add(PendingList{{Provider: "corp", State: "s", Nonce: "n", Verifier: "v", Expires: 1}}.Encode())
	f.Add(`[{"s":1}]`)
	f.Fuzz(func(t *testing.T, s string) {
		l := DecodePending(s)
		if len(l) > maxPending {
			t.Fatalf("%d pending kept", len(l))
		}
		l.Add(Pending{State: "new", Expires: 2}, time.UnixMilli(1))
	})
}
