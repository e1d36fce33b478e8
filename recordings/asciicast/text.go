package asciicast

import (
	"fmt"
	"io"
	"unicode/utf8"
)

// Text writes the plain text of the output events still to be read from rd
// to w, for full-text search. Escape sequences are dropped: CSI sequences,
// the control strings (OSC, DCS, SOS, PM, APC, up to BEL or ST) and short
// escapes such as charset selection, also in their 8-bit forms. So are
// control characters other than tab and newline; a carriage return becomes
// a newline, so that text overwritten on a line stays apart. Sequences that
// continue into the next event are followed across it. Text returns nil at
// the end of a whole recording, and rd's error otherwise, ErrTruncated for
// one cut short, after writing everything before it.
func Text(rd *Reader, w io.Writer) error {
	var s stripper
	var out []byte
	for {
		ev, err := rd.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if ev.Kind != Output {
			continue
		}
		out = s.strip(out[:0], ev.Data)
		if len(out) == 0 {
			continue
		}
		if _, err := w.Write(out); err != nil {
			return fmt.Errorf("asciicast: write text: %w", err)
		}
	}
}

// stripState is where a stripper is in ECMA-48's grammar.
type stripState uint8

const (
	inText     stripState = iota
	inEscape              // after ESC
	inEscInter            // after ESC and intermediate bytes, before the final byte
	inCSI                 // after CSI, before the final byte
	inString              // in a control string
	inStringEs            // after ESC in a control string: ST ends it
)

// maxControlString bounds what a control string may hide: past it, the
// stripper gives up on the string and keeps text again, so output opening
// a string it never ends cannot keep the rest of a session from search.
const maxControlString = 64 << 10

// stripper removes escape sequences from terminal text, keeping its state
// between calls.
type stripper struct {
	state     stripState
	crPending bool // a carriage return was written as a newline
	strLen    int
}

func (s *stripper) strip(dst []byte, text string) []byte {
	for _, r := range text {
		dst = s.rune(dst, r)
	}
	return dst
}

func (s *stripper) rune(dst []byte, r rune) []byte {
	const esc = 0x1b
	switch s.state {
	case inEscape:
		switch {
		case r == '[':
			s.state = inCSI
		case r == ']' || r == 'P' || r == 'X' || r == '^' || r == '_':
			s.startString()
		case r >= 0x20 && r <= 0x2f:
			s.state = inEscInter
		case r == esc || r < 0x20:
			// A new escape, or a control character acted on mid-sequence.
		default:
			s.state = inText
		}
		return dst
	case inEscInter:
		if r < 0x20 || r > 0x2f {
			s.state = inText
		}
		return dst
	case inCSI:
		switch {
		case r >= 0x40 && r <= 0x7e:
			s.state = inText
		case r >= 0x20 && r <= 0x3f, r < 0x20 && r != esc:
		case r == esc:
			s.state = inEscape
		default:
			// Not CSI grammar: the sequence was broken; keep the text.
			s.state = inText
			return s.rune(dst, r)
		}
		return dst
	case inString, inStringEs:
		s.strLen += utf8.RuneLen(r)
		switch {
		case s.state == inStringEs && r == '\\', r == 0x07, r == 0x9c:
			s.state = inText
		case s.state == inStringEs:
			s.state = inEscape
			return s.rune(dst, r)
		case r == esc:
			s.state = inStringEs
		case s.strLen > maxControlString:
			s.state = inText
		}
		return dst
	}
	switch {
	case r == esc:
		s.state = inEscape
	case r == 0x9b:
		s.state = inCSI
	case r == 0x90 || r == 0x98 || r == 0x9d || r == 0x9e || r == 0x9f:
		s.startString()
	case r == '\r':
		if !s.crPending {
			dst = append(dst, '\n')
			s.crPending = true
		}
	case r == '\n':
		if !s.crPending {
			dst = append(dst, '\n')
		}
		s.crPending = false
	case r == '\t' || (r >= 0x20 && r != 0x7f && (r < 0x80 || r > 0x9f)):
		dst = utf8.AppendRune(dst, r)
		s.crPending = false
	}
	return dst
}

func (s *stripper) startString() {
	s.state = inString
	s.strLen = 0
}
