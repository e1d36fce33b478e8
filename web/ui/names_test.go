package ui

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestDisplayName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"report.pdf", "report.pdf"},
		{"two  spaces", "two  spaces"},
		{"line\nbreak\ttab", "line␊break␉tab"},
		{"del\x7f", "del␡"},
		{"invoice\u202Efdp.exe", "invoice⟨U+202E⟩fdp.exe"},
		{"\u2066iso\u2069\u200F", "⟨U+2066⟩iso⟨U+2069⟩⟨U+200F⟩"},
		{"café 日本", "café 日本"},
	} {
		if got := DisplayName(tc.in); got != tc.want {
			t.Errorf("DisplayName(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// FuzzDisplayName: whatever a target names a file, what the page shows
// holds no control character and nothing that reorders text.
func FuzzDisplayName(f *testing.F) {
	for _, s := range []string{"a", "\u202e", "x\ny", "\xff\xfe", "\u2067\u2069"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		got := DisplayName(name)
		if !utf8.ValidString(got) {
			t.Fatalf("%q shown as invalid UTF-8 %q", name, got)
		}
		for _, r := range got {
			if r < 0x20 || r == 0x7f || isBidiControl(r) {
				t.Fatalf("%q shown as %q, which holds %U", name, got, r)
			}
		}
		if !strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f || isBidiControl(r) || r == utf8.RuneError }) && got != name {
			t.Fatalf("plain name %q changed to %q", name, got)
		}
	})
}
