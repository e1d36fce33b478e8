package clientinfo

import (
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"
)

// AcceptCH asks browsers for the high-entropy client hints Info reads;
// the low-entropy ones (Sec-CH-UA, Sec-CH-UA-Platform) come unasked.
// Browsers send them on the requests after the first page.
const AcceptCH = "Sec-CH-UA-Platform-Version, Sec-CH-UA-Full-Version-List"

// Bounds on what a client tells about itself: a value longer than
// maxValue runes is cut; hint headers longer than maxHintLen, and brand
// lists of more than maxBrands, are ignored.
const (
	maxValue   = 255
	maxHintLen = 1024
	maxBrands  = 16
	maxUALen   = 1024
)

// hints returns the platform, its version and the browser's name and
// version from the client hints, or from the User-Agent where the
// browser sent no hints (Firefox, Safari).
func hints(h http.Header) (platform, platformVersion, client string) {
	platform, _ = sfString(h.Get("Sec-CH-UA-Platform"))
	platformVersion, _ = sfString(h.Get("Sec-CH-UA-Platform-Version"))
	client = brand(h.Get("Sec-CH-UA-Full-Version-List"))
	if client == "" {
		client = brand(h.Get("Sec-CH-UA"))
	}
	if platform == "" || client == "" {
		uaPlatform, uaVersion, uaClient := userAgent(h.Get("User-Agent"))
		if platform == "" {
			platform, platformVersion = uaPlatform, uaVersion
		}
		if client == "" {
			client = uaClient
		}
	}
	return clean(platform), clean(platformVersion), clean(client)
}

// clean strips control characters and surrounding space from s and cuts
// it to maxValue runes; invalid UTF-8 becomes U+FFFD.
func clean(s string) string {
	var b strings.Builder
	n := 0
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || unicode.Is(unicode.Bidi_Control, r) {
			continue
		}
		if n == maxValue {
			break
		}
		b.WriteRune(r)
		n++
	}
	return strings.TrimSpace(b.String())
}

// sfString parses a structured-field string (RFC 8941): "..." with \"
// and \\ escapes, printable ASCII only.
func sfString(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if len(s) > maxHintLen {
		return "", false
	}
	v, rest, ok := sfStringPrefix(s)
	if !ok || strings.TrimSpace(rest) != "" {
		return "", false
	}
	return v, true
}

// sfStringPrefix parses the sf-string at the start of s and returns the
// rest of s after it.
func sfStringPrefix(s string) (string, string, bool) {
	if s == "" || s[0] != '"' {
		return "", s, false
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\':
			if i+1 >= len(s) || (s[i+1] != '"' && s[i+1] != '\\') {
				return "", s, false
			}
			i++
			b.WriteByte(s[i])
		case c == '"':
			return b.String(), s[i+1:], true
		case c < 0x20 || c > 0x7e:
			return "", s, false
		default:
			b.WriteByte(c)
		}
	}
	return "", s, false
}

// brand reads a Sec-CH-UA brand list (`"Brand";v="1.2", ...`) and
// returns "Brand version" of the most specific brand: GREASE brands
// ("Not A(Brand") are skipped, and "Chromium" is taken only when no
// other brand (Google Chrome, Microsoft Edge, Opera) is listed.
func brand(s string) string {
	if s == "" || len(s) > maxHintLen {
		return ""
	}
	var chromium string
	rest := strings.TrimSpace(s)
	for range maxBrands {
		name, r, ok := sfStringPrefix(rest)
		if !ok {
			return ""
		}
		version := ""
		rest = strings.TrimLeft(r, " ")
		for strings.HasPrefix(rest, ";") {
			key, r, _ := strings.Cut(rest[1:], "=")
			key = strings.TrimSpace(key)
			val, r2, ok := sfStringPrefix(strings.TrimLeft(r, " "))
			if !ok {
				return ""
			}
			if key == "v" {
				version = val
			}
			rest = strings.TrimLeft(r2, " ")
		}
		switch {
		case isGrease(name):
		case name == "Chromium":
			chromium = join(name, version)
		default:
			return join(name, version)
		}
		if rest == "" {
			return chromium
		}
		if rest[0] != ',' {
			return ""
		}
		rest = strings.TrimSpace(rest[1:])
	}
	return chromium
}

// isGrease reports whether a brand is one of the made-up names browsers
// add so that servers do not depend on the list's shape.
func isGrease(name string) bool {
	return strings.Contains(name, "Not") && strings.Contains(name, "Brand")
}

func join(name, version string) string {
	if version == "" {
		return name
	}
	return name + " " + version
}

// uaBrowsers are the User-Agent tokens of browsers, most specific
// first: Edge and Opera also say Chrome; Chrome also says Safari.
var uaBrowsers = []struct{ token, name string }{
	{"Edg/", "Microsoft Edge"},
	{"EdgA/", "Microsoft Edge"},
	{"EdgiOS/", "Microsoft Edge"},
	{"OPR/", "Opera"},
	{"Firefox/", "Firefox"},
	{"FxiOS/", "Firefox"},
	{"CriOS/", "Google Chrome"},
	{"Chrome/", "Google Chrome"},
	{"Version/", "Safari"}, // Safari's version, beside "Safari/"
}

// userAgent reads the platform, its version and the browser from a
// User-Agent, for browsers that send no client hints.
func userAgent(ua string) (platform, version, client string) {
	if ua == "" || len(ua) > maxUALen || !utf8.ValidString(ua) {
		return "", "", ""
	}
	for _, b := range uaBrowsers {
		i := strings.Index(ua, b.token)
		if i < 0 {
			continue
		}
		if b.name == "Safari" && !strings.Contains(ua, "Safari/") {
			continue
		}
		v := ua[i+len(b.token):]
		if j := strings.IndexAny(v, " ;)"); j >= 0 {
			v = v[:j]
		}
		client = join(b.name, v)
		break
	}
	switch {
	case strings.Contains(ua, "Windows"):
		platform = "Windows"
	case strings.Contains(ua, "Android"):
		platform, version = "Android", after(ua, "Android ", ";)")
	case strings.Contains(ua, "iPhone") || strings.Contains(ua, "iPad"):
		platform = "iOS"
		version = strings.ReplaceAll(after(ua, "OS ", " ;)"), "_", ".")
	case strings.Contains(ua, "Mac OS X"):
		platform = "macOS"
		version = strings.ReplaceAll(after(ua, "Mac OS X ", ";)"), "_", ".")
	case strings.Contains(ua, "CrOS"):
		platform = "Chrome OS"
	case strings.Contains(ua, "Linux"):
		platform = "Linux"
	}
	return platform, version, client
}

// after returns what follows the first marker in s, up to one of ends.
func after(s, marker, ends string) string {
	i := strings.Index(s, marker)
	if i < 0 {
		return ""
	}
	s = s[i+len(marker):]
	if j := strings.IndexAny(s, ends); j >= 0 {
		s = s[:j]
	}
	return s
}
