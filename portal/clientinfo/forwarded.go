package clientinfo

import (
	"net/netip"
	"strings"
)

// Bounds on the forwarding headers: only their last maxHeaderLen bytes
// and last maxHops entries are read (the proxies nearest the portal
// append on the right), and an entry longer than maxHopLen is malformed.
const (
	maxHeaderLen = 8 << 10
	maxHops      = 32
	maxHopLen    = 64
)

// hopList keeps the last maxHops entries of a forwarding header, left
// to right, without allocating for long headers. A "" entry is
// malformed.
type hopList struct {
	buf   [maxHops]string
	total int
	n     int
}

func (h *hopList) add(s string) {
	h.buf[h.total%maxHops] = s
	h.total++
	h.n = min(h.total, maxHops)
}

// at returns the i-th kept entry, 0 being the leftmost.
func (h *hopList) at(i int) string { return h.buf[(h.total-h.n+i)%maxHops] }

// lastBytes returns the header lines, the last maxHeaderLen bytes of
// them: earlier lines are dropped, and a line that does not fit whole
// is cut after a comma (the partial entry before it dropped).
func lastBytes(lines []string) []string {
	size := 0
	for i := len(lines) - 1; i >= 0; i-- {
		size += len(lines[i])
		if size <= maxHeaderLen {
			continue
		}
		over := size - maxHeaderLen
		cut := lines[i][over:]
		j := strings.IndexByte(cut, ',')
		if j < 0 {
			return lines[i+1:]
		}
		out := append([]string{cut[j+1:]}, lines[i+1:]...)
		return out
	}
	return lines
}

// forwardedFor reads X-Forwarded-For lines: comma-separated addresses.
func forwardedFor(lines []string) hopList {
	var h hopList
	for _, line := range lastBytes(lines) {
		for {
			i := strings.IndexByte(line, ',')
			if i < 0 {
				h.add(strings.Trim(line, " \t"))
				break
			}
			h.add(strings.Trim(line[:i], " \t"))
			line = line[i+1:]
		}
	}
	return h
}

// forwarded reads RFC 7239 Forwarded lines, keeping each element's for=
// value ("" for an element without one or with bad syntax).
func forwarded(lines []string) hopList {
	var h hopList
	for _, line := range lastBytes(lines) {
		parseForwarded(line, &h)
	}
	return h
}

// parseForwarded adds the for= values of one Forwarded line to h:
//
//	Forwarded   = 1#forwarded-element
//	forwarded-element = [ forwarded-pair ] *( ";" [ forwarded-pair ] )
//	forwarded-pair = token "=" value
//	value       = token / quoted-string
func parseForwarded(s string, h *hopList) {
	i := 0
	for {
		forVal, found, ok := "", false, true
		for ok {
			i = skipSpace(s, i)
			start := i
			for i < len(s) && isTchar(s[i]) {
				i++
			}
			name := s[start:i]
			if name == "" || i >= len(s) || s[i] != '=' {
				ok = false
				break
			}
			i++
			var val string
			if i < len(s) && s[i] == '"' {
				val, i, ok = quoted(s, i)
			} else {
				start = i
				for i < len(s) && isTchar(s[i]) {
					i++
				}
				val = s[start:i]
				ok = val != ""
			}
			if !ok {
				break
			}
			if strings.EqualFold(name, "for") {
				if found { // two for= in one element: which one?
					ok = false
					break
				}
				forVal, found = val, true
			}
			i = skipSpace(s, i)
			if i >= len(s) || s[i] == ',' {
				break
			}
			if s[i] != ';' {
				ok = false
				break
			}
			i++
		}
		if ok && found {
			h.add(forVal)
		} else {
			h.add("")
		}
		if !ok {
			// Resume at the next element, if the line has one.
			j := strings.IndexByte(s[min(i, len(s)):], ',')
			if j < 0 {
				return
			}
			i += j
		}
		if i >= len(s) {
			return
		}
		i++ // the comma
	}
}

// quoted reads the quoted-string starting at s[i] == '"', returning its
// content ("" when longer than maxHopLen) and the index after it.
func quoted(s string, i int) (string, int, bool) {
	i++
	start, escaped := i, false
	for ; i < len(s); i++ {
		switch s[i] {
		case '\\':
			escaped = true
			i++
		case '"':
			v := s[start:i]
			if len(v) > maxHopLen {
				return "", i + 1, true
			}
			if escaped {
				v = unescape(v)
			}
			return v, i + 1, true
		}
	}
	return "", len(s), false
}

func unescape(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] == '\\' && i+1 < len(v) {
			i++
		}
		b.WriteByte(v[i])
	}
	return b.String()
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	return i
}

// isTchar reports whether c may appear in an HTTP token (RFC 9110).
func isTchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// parseHop reads one forwarding entry: an address, optionally with a
// port, IPv6 optionally in brackets. "unknown", obfuscated names ("_x"),
// zones and anything else are malformed.
func parseHop(s string) (netip.Addr, bool) {
	if s == "" || len(s) > maxHopLen {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		ap, perr := netip.ParseAddrPort(s)
		switch {
		case perr == nil:
			a = ap.Addr()
		case len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']':
			if a, err = netip.ParseAddr(s[1 : len(s)-1]); err != nil || !a.Is6() {
				return netip.Addr{}, false
			}
		default:
			return netip.Addr{}, false
		}
	}
	if a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}
