package ui

import (
	"fmt"
	"strings"
)

// DisplayName shows a name from a target (a file name, a path) so that it
// reads as it is: control characters (a newline, a tab) become visible
// symbols, and the invisible characters that reorder text (bidirectional
// overrides and isolates, which can make "exe.txt" read as "txt.exe")
// are written out as ⟨U+202E⟩.
func DisplayName(name string) string {
	var b strings.Builder
	for _, r := range name {
		switch {
		case r < 0x20:
			b.WriteRune(0x2400 + r)
		case r == 0x7f:
			b.WriteRune(0x2421)
		case isBidiControl(r):
			fmt.Fprintf(&b, "⟨U+%04X⟩", r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// isBidiControl reports the Unicode characters that change the direction
// of the text around them.
func isBidiControl(r rune) bool {
	return r == 0x061C || r == 0x200E || r == 0x200F || (r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069)
}
