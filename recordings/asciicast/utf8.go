package asciicast

import "unicode/utf8"

// subpart examines the UTF-8 sequence at the start of b, whose first byte
// is not ASCII. need is the length of a whole character with that first
// byte, 0 when it cannot start one; n is the length of the longest prefix
// that is a character or the valid beginning of one (at least 1). Unicode
// calls a prefix that stops short a maximal subpart and replaces it, not
// each of its bytes, with one U+FFFD; asciinema does the same.
func subpart(b []byte) (n, need int) {
	lo, hi := byte(0x80), byte(0xBF)
	switch c := b[0]; {
	case c >= 0xC2 && c <= 0xDF:
		need = 2
	case c == 0xE0:
		need, lo = 3, 0xA0 // no overlong forms
	case c >= 0xE1 && c <= 0xEC, c == 0xEE, c == 0xEF:
		need = 3
	case c == 0xED:
		need, hi = 3, 0x9F // no surrogates
	case c == 0xF0:
		need, lo = 4, 0x90 // no overlong forms
	case c >= 0xF1 && c <= 0xF3:
		need = 4
	case c == 0xF4:
		need, hi = 4, 0x8F // nothing above U+10FFFF
	default:
		return 1, 0
	}
	n = 1
	for n < need && n < len(b) {
		if b[n] < lo || b[n] > hi {
			return n, need
		}
		lo, hi = 0x80, 0xBF
		n++
	}
	return n, need
}

const hexDigits = "0123456789abcdef"

// appendText appends src to dst as the inside of a JSON string, with each
// invalid UTF-8 subsequence replaced by U+FFFD. Unless final, a valid but
// incomplete character at the end of src is held back: held is how many
// bytes of src, at its end, were not used.
func appendText(dst, src []byte, final bool) (out []byte, held int) {
	for i := 0; i < len(src); {
		c := src[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c < 0x20 || c == 0x7f: // DEL too, for readable files
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		n, need := subpart(src[i:])
		switch {
		case n == need:
			dst = append(dst, src[i:i+n]...)
		case !final && need > 0 && i+n == len(src):
			return dst, n
		default:
			dst = append(dst, string(utf8.RuneError)...)
		}
		i += n
	}
	return dst, 0
}
