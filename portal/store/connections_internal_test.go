package store

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// FuzzClip checks that whatever bytes come in, a stored value is valid
// UTF-8, one line, at most n characters, and a prefix of the cleaned
// input.
func FuzzClip(f *testing.F) {
	for _, s := range []string{"", "abc", "é\xffx", "a\r\nb", strings.Repeat("é", 300), "\x00\x1b[31m"} {
		f.Add(s, 5)
	}
	f.Fuzz(func(t *testing.T, s string, n int) {
		if n < 0 || n > 2000 {
			return
		}
		got := clip(s, n)
		if !utf8.ValidString(got) || utf8.RuneCountInString(got) > n {
			t.Fatalf("clip(%q, %d) = %q", s, n, got)
		}
		if strings.ContainsFunc(got, unicode.IsControl) {
			t.Fatalf("clip(%q, %d) = %q keeps a control character", s, n, got)
		}
		if full := clip(s, len(s)+1); !strings.HasPrefix(full, got) {
			t.Fatalf("clip(%q, %d) = %q is not a prefix of %q", s, n, got, full)
		}
	})
}
