package hook

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestParseResponse(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", 300)
	for _, tc := range []struct {
		name, body string
		want       answer
		err        string // "" for accepted
	}{
		{name: "allow", body: `{"allow":true,"error-msg-on-denied-connection":"","posture-compliance-statuses":["managed"],"schema-version":"v1"}`,
			want: answer{Allow: true, Posture: []string{"managed"}}},
		{name: "deny", body: `{"allow":false,"error-msg-on-denied-connection":"Not today.","posture-compliance-statuses":[],"schema-version":"v1"}`,
			want: answer{Message: "Not today.", Posture: []string{}}},
		{name: "long message cut to 255 characters", body: `{"allow":false,"error-msg-on-denied-connection":"` + long + `","posture-compliance-statuses":[],"schema-version":"v1"}`,
			want: answer{Message: strings.Repeat("é", MaxMessage), Posture: []string{}}},
		{name: "control characters in message", body: `{"allow":false,"error-msg-on-denied-connection":"a\nb\u0007c","posture-compliance-statuses":[],"schema-version":"v1"}`,
			want: answer{Message: "a b c", Posture: []string{}}},
		{name: "unknown fields ignored", body: `{"allow":true,"error-msg-on-denied-connection":"","posture-compliance-statuses":[],"schema-version":"v1","x":[1]}`,
			want: answer{Allow: true, Posture: []string{}}},
		{name: "ten posture names of 255", body: `{"allow":true,"error-msg-on-denied-connection":"","posture-compliance-statuses":` + names(10, 255) + `,"schema-version":"v1"}`,
			want: answer{Allow: true, Posture: slices.Repeat([]string{strings.Repeat("p", 255)}, 10)}},
		{name: "garbage", body: `<html>`, err: "not a JSON object"},
		{name: "empty", body: ``, err: "not a JSON object"},
		{name: "array", body: `[]`, err: "not a JSON object"},
		{name: "null", body: `null`, err: "null, not a JSON object"},
		{name: "trailing data", body: `{"allow":true,"error-msg-on-denied-connection":"","posture-compliance-statuses":[],"schema-version":"v1"} {}`, err: "not a JSON object"},
		{name: "missing allow", body: `{"error-msg-on-denied-connection":"","posture-compliance-statuses":[],"schema-version":"v1"}`, err: `no "allow"`},
		{name: "allow in capitals", body: `{"ALLOW":true,"error-msg-on-denied-connection":"","posture-compliance-statuses":[],"schema-version":"v1"}`, err: `no "allow"`},
		{name: "missing message", body: `{"allow":true,"posture-compliance-statuses":[],"schema-version":"v1"}`, err: `no "error-msg-on-denied-connection"`},
		{name: "missing posture", body: `{"allow":true,"error-msg-on-denied-connection":"","schema-version":"v1"}`, err: `no "posture-compliance-statuses"`},
		{name: "missing schema", body: `{"allow":true,"error-msg-on-denied-connection":"","posture-compliance-statuses":[]}`, err: `no "schema-version"`},
		{name: "allow as string", body: `{"allow":"true","error-msg-on-denied-connection":"","posture-compliance-statuses":[],"schema-version":"v1"}`, err: `"allow" is not a boolean`},
		{name: "allow as number", body: `{"allow":1,"error-msg-on-denied-connection":"","posture-compliance-statuses":[],"schema-version":"v1"}`, err: `"allow" is not a boolean`},
		{name: "allow null", body: `{"allow":null,"error-msg-on-denied-connection":"","posture-compliance-statuses":[],"schema-version":"v1"}`, err: `"allow" is null`},
		{name: "message number", body: `{"allow":false,"error-msg-on-denied-connection":5,"posture-compliance-statuses":[],"schema-version":"v1"}`, err: "is not a string"},
		{name: "message null", body: `{"allow":false,"error-msg-on-denied-connection":null,"posture-compliance-statuses":[],"schema-version":"v1"}`, err: "is null, not a string"},
		{name: "posture string", body: `{"allow":true,"error-msg-on-denied-connection":"","posture-compliance-statuses":"ok","schema-version":"v1"}`, err: "not an array of strings"},
		{name: "posture numbers", body: `{"allow":true,"error-msg-on-denied-connection":"","posture-compliance-statuses":[1],"schema-version":"v1"}`, err: "not an array of strings"},
		{name: "posture null", body: `{"allow":true,"error-msg-on-denied-connection":"","posture-compliance-statuses":null,"schema-version":"v1"}`, err: "null, not an array"},
		{name: "posture null element", body: `{"allow":true,"error-msg-on-denied-connection":"","posture-compliance-statuses":["a",null],"schema-version":"v1"}`, err: "status 2 is null"},
		{name: "posture empty name", body: `{"allow":true,"error-msg-on-denied-connection":"","posture-compliance-statuses":[""],"schema-version":"v1"}`, err: "status 1 is empty"},
		{name: "posture control character", body: `{"allow":true,"error-msg-on-denied-connection":"","posture-compliance-statuses":["a\nb"],"schema-version":"v1"}`, err: "control characters"},
		{name: "eleven posture names", body: `{"allow":true,"error-msg-on-denied-connection":"","posture-compliance-statuses":` + names(11, 1) + `,"schema-version":"v1"}`, err: "11 posture statuses"},
		{name: "posture name of 256", body: `{"allow":true,"error-msg-on-denied-connection":"","posture-compliance-statuses":` + names(1, 256) + `,"schema-version":"v1"}`, err: "longer than 255"},
		{name: "schema v2", body: `{"allow":true,"error-msg-on-denied-connection":"","posture-compliance-statuses":[],"schema-version":"v2"}`, err: `is "v2"`},
		{name: "schema number", body: `{"allow":true,"error-msg-on-denied-connection":"","posture-compliance-statuses":[],"schema-version":1}`, err: "is not a string"},
	} {
		got, err := parseResponse([]byte(tc.body))
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.err == "" && (got.Allow != tc.want.Allow || got.Message != tc.want.Message || !slices.Equal(got.Posture, tc.want.Posture)):
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: error %v, want one saying %q", tc.name, err, tc.err)
		}
	}
}

// names is a JSON array of n names of size characters each.
func names(n, size int) string {
	b, _ := json.Marshal(slices.Repeat([]string{strings.Repeat("p", size)}, n))
	return string(b)
}

// FuzzParseResponse: whatever the hook sends, parsing neither panics nor
// accepts an answer outside the limits the portal stores and shows.
func FuzzParseResponse(f *testing.F) {
	for _, s := range []string{
		`{"allow":true,"error-msg-on-denied-connection":"","posture-compliance-statuses":["managed"],"schema-version":"v1"}`,
		`{"allow":false,"error-msg-on-denied-connection":"no\u0000","posture-compliance-statuses":[],"schema-version":"v1"}`,
		`{"allow":null,"error-msg-on-denied-connection":"","posture-compliance-statuses":[null],"schema-version":"v1"}`,
		`{"allow":true,"allow":false,"error-msg-on-denied-connection":"\xff\xfe","posture-compliance-statuses":["a","b"],"schema-version":"v1"}`,
		`[1,2,3]`, `null`, `"v1"`, `{}`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ans, err := parseResponse(data)
		if err != nil {
			if ans.Allow || ans.Message != "" || ans.Posture != nil {
				t.Fatalf("refused answer carries data: %+v", ans)
			}
			return
		}
		if !json.Valid(data) {
			t.Fatalf("accepted invalid JSON %q", data)
		}
		if n := utf8.RuneCountInString(ans.Message); n > MaxMessage || strings.ContainsFunc(ans.Message, unicode.IsControl) {
			t.Fatalf("message of %d characters, or with control characters: %q", n, ans.Message)
		}
		if len(ans.Posture) > MaxPostureNames || ans.Posture == nil {
			t.Fatalf("posture %q", ans.Posture)
		}
		for _, p := range ans.Posture {
			if p == "" || utf8.RuneCountInString(p) > MaxPostureName || strings.ContainsFunc(p, unicode.IsControl) {
				t.Fatalf("posture name %q", p)
			}
		}
	})
}
