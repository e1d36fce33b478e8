package asciicast

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestStrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []string // output events
		want string
	}{
		{"plain", []string{"hello\n"}, "hello\n"},
		{"SGR colours", []string{"\x1b[1;31mred\x1b[0m plain"}, "red plain"},
		{"CSI with private marker", []string{"\x1b[?2004hon\x1b[?2004l"}, "on"},
		{"CRLF is one newline", []string{"a\r\nb\r\n"}, "a\nb\n"},
		{"CR alone separates", []string{"50%\r100%"}, "50%\n100%"},
		{"erase between CR and LF", []string{"line\r\x1b[K\n"}, "line\n"},
		{"OSC title ended by BEL", []string{"\x1b]0;user@host: ~\x07$ ls"}, "$ ls"},
		{"OSC ended by ST", []string{"\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\"}, "link"},
		{"DCS", []string{"\x1bPq#0;2;0;0;0\x1b\\after"}, "after"},
		{"charset selection", []string{"\x1b(Bplain\x1b)0"}, "plain"},
		{"two-byte escapes", []string{"\x1b7saved\x1b8\x1b=\x1b>"}, "saved"},
		{"8-bit CSI", []string{"\u009b1mbold"}, "bold"},
		{"8-bit OSC", []string{"\u009d0;title\u009cvisible"}, "visible"},
		{"control characters", []string{"a\x07b\x08c\x00d\x7fe\tf"}, "abcde\tf"},
		{"CSI split across events", []string{"x\x1b", "[3", "1mred"}, "xred"},
		{"OSC split across events", []string{"\x1b]0;ti", "tle\x07", "text"}, "text"},
		{"ST split across events", []string{"\x1b]0;t\x1b", "\\text"}, "text"},
		{"ESC inside a string starts a new escape", []string{"\x1b]0;t\x1b[1mtext"}, "text"},
		{"broken CSI keeps the text", []string{"\x1b[12é text"}, "é text"},
		{"unicode", []string{"café ✓ 😀"}, "café ✓ 😀"},
		// Past maxControlString bytes, the string ends and the rest is text.
		{"unended string gives up", []string{"\x1b]0;", strings.Repeat("x", maxControlString+10), "seen"}, strings.Repeat("x", 11) + "seen"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s stripper
			var got []byte
			for _, ev := range tc.in {
				got = s.strip(got, ev)
			}
			if string(got) != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestText(t *testing.T) {
	f, err := os.Open("testdata/session.cast")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd, err := NewReader(f, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := Text(rd, &out); err != nil {
		t.Fatal(err)
	}
	// Input ("ls") is not output and is left out.
	if want := "Hello \"you\"\ncafé ✓\t\\ a\ufffdb\ufffdc\ufffd\ufffd\ufffddend\ufffd"; out.String() != want {
		t.Errorf("text %q, want %q", out.String(), want)
	}

	f2, err := os.Open("testdata/cut.cast")
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()
	rd, err = NewReader(f2, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := Text(rd, &out); !errors.Is(err, ErrTruncated) || out.String() != "one" {
		t.Errorf("text of a cut recording: %q, %v", out.String(), err)
	}
}
