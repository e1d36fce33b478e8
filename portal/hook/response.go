package hook

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Names of the response's fields.
const (
	fieldAllow   = "allow"
	fieldMessage = "error-msg-on-denied-connection"
	fieldPosture = "posture-compliance-statuses"
	fieldSchema  = "schema-version"
)

// answer is a hook's response once checked.
type answer struct {
	Allow   bool
	Message string // cut to MaxMessage runes, control characters as spaces
	Posture []string
}

// parseResponse reads a hook's answer strictly: a JSON object with all
// four fields, of the right types, and schema-version "v1". Field names
// match exactly (encoding/json alone would take "ALLOW" for "allow");
// fields it does not know are ignored, so a hook may send more. The
// caller bounds data to MaxResponse.
func parseResponse(data []byte) (answer, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return answer{}, fmt.Errorf("hook answer is not a JSON object: %w", err)
	}
	if fields == nil {
		return answer{}, errors.New("hook answer is null, not a JSON object")
	}
	var (
		allow   *bool
		message *string
		posture *[]*string
		schema  *string
	)
	for _, f := range []struct {
		name string
		into any
		typ  string
	}{
		{fieldAllow, &allow, "a boolean"},
		{fieldMessage, &message, "a string"},
		{fieldPosture, &posture, "an array of strings"},
		{fieldSchema, &schema, "a string"},
	} {
		raw, ok := fields[f.name]
		if !ok {
			return answer{}, fmt.Errorf("hook answer has no %q", f.name)
		}
		if err := json.Unmarshal(raw, f.into); err != nil {
			return answer{}, fmt.Errorf("hook answer's %q is not %s", f.name, f.typ)
		}
	}
	switch {
	case allow == nil:
		return answer{}, fmt.Errorf("hook answer's %q is null, not a boolean", fieldAllow)
	case message == nil:
		return answer{}, fmt.Errorf("hook answer's %q is null, not a string", fieldMessage)
	case posture == nil:
		return answer{}, fmt.Errorf("hook answer's %q is null, not an array of strings", fieldPosture)
	case schema == nil:
		return answer{}, fmt.Errorf("hook answer's %q is null, not a string", fieldSchema)
	case *schema != SchemaVersion:
		return answer{}, fmt.Errorf("hook answer's %q is %q; the portal speaks %q", fieldSchema, cut(*schema, 20), SchemaVersion)
	case len(*posture) > MaxPostureNames:
		return answer{}, fmt.Errorf("hook answer has %d posture statuses; at most %d are allowed", len(*posture), MaxPostureNames)
	}
	ans := answer{Allow: *allow, Message: cleanMessage(*message), Posture: make([]string, 0, len(*posture))}
	for i, p := range *posture {
		switch {
		case p == nil:
			return answer{}, fmt.Errorf("hook answer's posture status %d is null, not a string", i+1)
		case *p == "":
			return answer{}, fmt.Errorf("hook answer's posture status %d is empty", i+1)
		case utf8.RuneCountInString(*p) > MaxPostureName:
			return answer{}, fmt.Errorf("hook answer's posture status %d is longer than %d characters", i+1, MaxPostureName)
		case strings.ContainsFunc(*p, unicode.IsControl):
			return answer{}, fmt.Errorf("hook answer's posture status %d holds control characters", i+1)
		}
		ans.Posture = append(ans.Posture, *p)
	}
	return ans, nil
}

// cleanMessage makes the hook's message fit for showing as one line of
// text: control characters become spaces, and it is cut to MaxMessage
// characters.
func cleanMessage(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	return strings.TrimSpace(cut(s, MaxMessage))
}

// cut returns the first n runes of s.
func cut(s string, n int) string {
	i := 0
	for j := range s {
		if i == n {
			return s[:j]
		}
		i++
	}
	return s
}
