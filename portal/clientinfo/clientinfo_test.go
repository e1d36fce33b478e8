package clientinfo

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func mustPrefixes(t testing.TB, s ...string) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for _, p := range s {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}

func TestAddr(t *testing.T) {
	t.Parallel()
	trusted := mustPrefixes(t, "10.0.0.0/8", "2001:db8:ffff::/48")
	for _, tc := range []struct {
		name, remote string
		xff, fwd     []string
		want         string
	}{
		{name: "no proxy", remote: "203.0.113.9:5000", want: "203.0.113.9"},
		{name: "untrusted remote's XFF ignored", remote: "203.0.113.9:5000", xff: []string{"198.51.100.1"}, want: "203.0.113.9"},
		{name: "untrusted remote's Forwarded ignored", remote: "203.0.113.9:5000", fwd: []string{"for=198.51.100.1"}, want: "203.0.113.9"},
		{name: "trusted remote without header", remote: "10.1.1.1:5000", want: "10.1.1.1"},
		{name: "one proxy", remote: "10.1.1.1:5000", xff: []string{"198.51.100.1"}, want: "198.51.100.1"},
		{name: "client's forged entry left of the real one", remote: "10.1.1.1:5000", xff: []string{"6.6.6.6, 198.51.100.1"}, want: "198.51.100.1"},
		{name: "two trusted proxies", remote: "10.1.1.1:5000", xff: []string{"198.51.100.1, 10.2.2.2"}, want: "198.51.100.1"},
		{name: "several header lines", remote: "10.1.1.1:5000", xff: []string{"6.6.6.6", "198.51.100.1, 10.2.2.2"}, want: "198.51.100.1"},
		{name: "all hops trusted", remote: "10.1.1.1:5000", xff: []string{"10.3.3.3, 10.2.2.2"}, want: "10.3.3.3"},
		{name: "garbage right of the client stops the walk", remote: "10.1.1.1:5000", xff: []string{"198.51.100.1, garbage, 10.2.2.2"}, want: "10.2.2.2"},
		{name: "garbage last", remote: "10.1.1.1:5000", xff: []string{"198.51.100.1, nonsense"}, want: "10.1.1.1"},
		{name: "garbage left of the client is not read", remote: "10.1.1.1:5000", xff: []string{"garbage, 198.51.100.1"}, want: "198.51.100.1"},
		{name: "empty entry", remote: "10.1.1.1:5000", xff: []string{"198.51.100.1,"}, want: "10.1.1.1"},
		{name: "address with port", remote: "10.1.1.1:5000", xff: []string{"198.51.100.1:4711"}, want: "198.51.100.1"},
		{name: "IPv6", remote: "[2001:db8:ffff::1]:443", xff: []string{"2001:db8::17"}, want: "2001:db8::17"},
		{name: "bracketed IPv6 with port", remote: "10.1.1.1:5000", xff: []string{"[2001:db8::17]:4711"}, want: "2001:db8::17"},
		{name: "bracketed IPv6", remote: "10.1.1.1:5000", xff: []string{"[2001:db8::17]"}, want: "2001:db8::17"},
		{name: "zone refused", remote: "10.1.1.1:5000", xff: []string{"fe80::1%eth0"}, want: "10.1.1.1"},
		{name: "IPv4-mapped remote matches an IPv4 network", remote: "[::ffff:10.1.1.1]:5000", xff: []string{"198.51.100.1"}, want: "198.51.100.1"},
		{name: "IPv4-mapped hop unmapped", remote: "10.1.1.1:5000", xff: []string{"::ffff:198.51.100.1"}, want: "198.51.100.1"},
		{name: "XFF wins over Forwarded", remote: "10.1.1.1:5000", xff: []string{"198.51.100.1"}, fwd: []string{"for=6.6.6.6"}, want: "198.51.100.1"},
		{name: "Forwarded", remote: "10.1.1.1:5000", fwd: []string{"for=198.51.100.1;proto=https;by=10.1.1.1"}, want: "198.51.100.1"},
		{name: "Forwarded quoted IPv6 with port", remote: "10.1.1.1:5000", fwd: []string{`for="[2001:db8:cafe::17]:4711"`}, want: "2001:db8:cafe::17"},
		{name: "Forwarded quoted IPv4 with port", remote: "10.1.1.1:5000", fwd: []string{`For="198.51.100.1:47011"`}, want: "198.51.100.1"},
		{name: "Forwarded chain", remote: "10.1.1.1:5000", fwd: []string{`for=6.6.6.6, for=198.51.100.1, for=10.2.2.2;proto=https`}, want: "198.51.100.1"},
		{name: "Forwarded lines", remote: "10.1.1.1:5000", fwd: []string{`for=6.6.6.6`, `for=198.51.100.1`}, want: "198.51.100.1"},
		{name: "Forwarded unknown", remote: "10.1.1.1:5000", fwd: []string{`for=198.51.100.1, for=unknown`}, want: "10.1.1.1"},
		{name: "Forwarded obfuscated", remote: "10.1.1.1:5000", fwd: []string{`for=_hidden`}, want: "10.1.1.1"},
		{name: "Forwarded unquoted IPv6", remote: "10.1.1.1:5000", fwd: []string{`for=[2001:db8::1]`}, want: "10.1.1.1"},
		{name: "Forwarded element without for", remote: "10.1.1.1:5000", fwd: []string{`for=198.51.100.1, proto=https`}, want: "10.1.1.1"},
		{name: "Forwarded two for in one element", remote: "10.1.1.1:5000", fwd: []string{`for=198.51.100.1;for=6.6.6.6`}, want: "10.1.1.1"},
		{name: "Forwarded unterminated quote", remote: "10.1.1.1:5000", fwd: []string{`for="198.51.100.1`}, want: "10.1.1.1"},
		{name: "Forwarded bad element left of the client", remote: "10.1.1.1:5000", fwd: []string{`for="x;;, for=198.51.100.1`}, want: "10.1.1.1"},
		{name: "Forwarded broken element recovered", remote: "10.1.1.1:5000", fwd: []string{`junk junk, for=198.51.100.1`}, want: "198.51.100.1"},
		{name: "Forwarded quoted comma", remote: "10.1.1.1:5000", fwd: []string{`for=198.51.100.1;ext="a,b"`}, want: "198.51.100.1"},
		{name: "Forwarded escaped quote", remote: "10.1.1.1:5000", fwd: []string{`for="198.51.100.1";ext="a\"b"`}, want: "198.51.100.1"},
		{name: "remote without port", remote: "203.0.113.9", want: "203.0.113.9"},
		{name: "remote not an address", remote: "pipe", xff: []string{"198.51.100.1"}, want: "pipe"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := New()
			r.SetTrusted(trusted)
			req := httptest.NewRequest("GET", "/", nil)
			req.RemoteAddr = tc.remote
			for _, v := range tc.xff {
				req.Header.Add("X-Forwarded-For", v)
			}
			for _, v := range tc.fwd {
				req.Header.Add("Forwarded", v)
			}
			if got := r.Addr(req); got != tc.want {
				t.Errorf("Addr = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestAddrTrustsNobodyByDefault: a new Resolver believes no header.
func TestAddrTrustsNobodyByDefault(t *testing.T) {
	t.Parallel()
	req := httptest.NewRequest("GET", "/", nil)
	req.RemoteAddr = "127.0.0.1:1234"
	req.Header.Set("X-Forwarded-For", "198.51.100.1")
	r := New()
	if got := r.Addr(req); got != "127.0.0.1" {
		t.Fatalf("Addr = %q", got)
	}
	r.SetTrusted(mustPrefixes(t, "127.0.0.0/8"))
	if got := r.Addr(req); got != "198.51.100.1" {
		t.Fatalf("after SetTrusted: Addr = %q", got)
	}
	r.SetTrusted(nil)
	if got := r.Addr(req); got != "127.0.0.1" {
		t.Fatalf("after SetTrusted(nil): Addr = %q", got)
	}
}

// TestAddrBounds: long headers and many hops are read from the right
// only, so a client cannot push the real entries out of view.
func TestAddrBounds(t *testing.T) { // not parallel: it counts allocations
	r := New()
	r.SetTrusted(mustPrefixes(t, "10.0.0.0/8"))
	req := func(hdr, v string) *http.Request {
		q := httptest.NewRequest("GET", "/", nil)
		q.RemoteAddr = "10.1.1.1:1"
		q.Header.Set(hdr, v)
		return q
	}
	long := strings.Repeat("6.6.6.6, ", 200000) // 1.8 MB
	if got := r.Addr(req("X-Forwarded-For", long+"198.51.100.1")); got != "198.51.100.1" {
		t.Errorf("long XFF: %q", got)
	}
	if got := r.Addr(req("Forwarded", strings.Repeat("for=6.6.6.6, ", 200000)+"for=198.51.100.1")); got != "198.51.100.1" {
		t.Errorf("long Forwarded: %q", got)
	}
	if got := r.Addr(req("X-Forwarded-For", strings.Repeat("A", 1<<20))); got != "10.1.1.1" {
		t.Errorf("one huge entry: %q", got)
	}
	// More trusted hops than are read: the walk ends at the farthest
	// one it read, never past it.
	if got := r.Addr(req("X-Forwarded-For", "198.51.100.1"+strings.Repeat(", 10.9.9.9", maxHops))); got != "10.9.9.9" {
		t.Errorf("many trusted hops: %q", got)
	}
	if got := r.Addr(req("X-Forwarded-For", "198.51.100.1"+strings.Repeat(", 10.9.9.9", maxHops-1))); got != "198.51.100.1" {
		t.Errorf("trusted hops at the bound: %q", got)
	}
	longReq := req("X-Forwarded-For", long+"198.51.100.1")
	allocs := testing.AllocsPerRun(20, func() { r.Addr(longReq) })
	if allocs > 20 {
		t.Errorf("%v allocations for a long header", allocs)
	}
}

func TestInfo(t *testing.T) {
	t.Parallel()
	chrome := "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36"
	for _, tc := range []struct {
		name                              string
		hdr                               map[string]string
		platform, platformVersion, client string
	}{
		{name: "Chrome with high-entropy hints", hdr: map[string]string{
			"Sec-CH-UA-Platform": `"Windows"`, "Sec-CH-UA-Platform-Version": `"15.0.0"`,
			"Sec-CH-UA-Full-Version-List": `"Google Chrome";v="123.0.6312.86", "Not:A-Brand";v="8.0.0.0", "Chromium";v="123.0.6312.86"`,
			"Sec-CH-UA":                   `"Google Chrome";v="123", "Not:A-Brand";v="8", "Chromium";v="123"`, "User-Agent": chrome},
			platform: "Windows", platformVersion: "15.0.0", client: "Google Chrome 123.0.6312.86"},
		{name: "GREASE first", hdr: map[string]string{
			"Sec-CH-UA-Platform":          `"macOS"`,
			"Sec-CH-UA-Full-Version-List": `"Not;A=Brand";v="99.0.0.0", "Microsoft Edge";v="120.0.2210.91", "Chromium";v="120.0.6099.130"`},
			platform: "macOS", client: "Microsoft Edge 120.0.2210.91"},
		{name: "only Chromium", hdr: map[string]string{
			"Sec-CH-UA-Platform": `"Linux"`, "Sec-CH-UA": `"Not_A Brand";v="8", "Chromium";v="120"`},
			platform: "Linux", client: "Chromium 120"},
		{name: "low-entropy only", hdr: map[string]string{
			"Sec-CH-UA-Platform": `"Android"`, "Sec-CH-UA": `"Chromium";v="120", "Google Chrome";v="120", "Not?A_Brand";v="24"`},
			platform: "Android", client: "Google Chrome 120"},
		{name: "malformed brand list falls back to the UA", hdr: map[string]string{
			"Sec-CH-UA-Platform": `"Windows"`, "Sec-CH-UA": `Chromium;v=120`, "User-Agent": chrome},
			platform: "Windows", client: "Google Chrome 123.0.0.0"},
		{name: "Firefox on Linux", hdr: map[string]string{"User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"},
			platform: "Linux", client: "Firefox 121.0"},
		{name: "Safari on macOS", hdr: map[string]string{"User-Agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15"},
			platform: "macOS", platformVersion: "10.15.7", client: "Safari 17.1"},
		{name: "Safari on iPhone", hdr: map[string]string{"User-Agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"},
			platform: "iOS", platformVersion: "17.1.2", client: "Safari 17.1"},
		{name: "Edge by UA", hdr: map[string]string{"User-Agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91"},
			platform: "Windows", client: "Microsoft Edge 120.0.2210.91"},
		{name: "Chrome on Android by UA", hdr: map[string]string{"User-Agent": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.144 Mobile Safari/537.36"},
			platform: "Android", platformVersion: "14", client: "Google Chrome 120.0.6099.144"},
		{name: "curl", hdr: map[string]string{"User-Agent": "curl/8.5.0"}},
		{name: "nothing"},
		{name: "escapes read, control characters refused", hdr: map[string]string{"Sec-CH-UA-Platform": `"Win\"dows"`, "Sec-CH-UA": "\"Evil\x1b[31m\";v=\"1\""}, platform: `Win"dows`,
			client: ""},
		{name: "long platform cut", hdr: map[string]string{"Sec-CH-UA-Platform": `"` + strings.Repeat("x", 600) + `"`}, platform: strings.Repeat("x", 255)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req := httptest.NewRequest("GET", "/", nil)
			for k, v := range tc.hdr {
				req.Header.Set(k, v)
			}
			got := New().Info(req)
			want := Info{Addr: "192.0.2.1", Platform: tc.platform, PlatformVersion: tc.platformVersion, ClientVersion: tc.client}
			if got != want {
				t.Errorf("Info =\n%+v, want\n%+v", got, want)
			}
		})
	}
}

func TestInfoCommonName(t *testing.T) {
	t.Parallel()
	req := httptest.NewRequest("GET", "/", nil)
	req.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{{Subject: pkix.Name{CommonName: "laptop-42\x00\n"}}}}
	if got := New().Info(req).CommonName; got != "laptop-42" {
		t.Fatalf("CommonName = %q", got)
	}
}

func TestParseTrusted(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, want, err string
	}{
		{in: "", want: ""},
		{in: "10.0.0.0/8\n192.0.2.7\r\n2001:db8::/32, 10.1.2.3/16", want: "10.0.0.0/8\n192.0.2.7/32\n2001:db8::/32\n10.1.0.0/16"},
		{in: "10.0.0.0/33", err: `"10.0.0.0/33" is not a network`},
		{in: "proxy.example.com", err: `"proxy.example.com" is not a network`},
		{in: "0.0.0.0/0", err: "would trust every address"},
		{in: "::/0", err: "would trust every address"},
		{in: "::ffff:10.0.0.0/104", err: "IPv4-mapped"},
		{in: "fe80::1%eth0", err: "is not a network"},
		{in: strings.Repeat("10.0.0.1\n", MaxTrusted+1), err: "at most 100"},
	} {
		p, err := ParseTrusted(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseTrusted(%q) = %v, %v; want error %q", tc.in, p, err, tc.err)
			}
			continue
		}
		if err != nil || FormatTrusted(p) != tc.want {
			t.Errorf("ParseTrusted(%q) = %q, %v; want %q", tc.in, FormatTrusted(p), err, tc.want)
		}
	}
}

// FuzzAddr: whatever the headers say, Addr returns the connection's
// address or an address that the header names, and it stays the
// connection's address when that is not a trusted proxy.
func FuzzAddr(f *testing.F) {
	for _, s := range []string{"198.51.100.1", "for=198.51.100.1", `for="[2001:db8::1]:80", for=10.0.0.1`, `for="a\"b`, "1.2.3.4,,", "[::1]:80"} {
		f.Add("10.1.1.1:1", s, s)
		f.Add("203.0.113.9:1", s, "")
	}
	trusted := mustPrefixes(f, "10.0.0.0/8", "2001:db8::/32")
	f.Fuzz(func(t *testing.T, remote, xff, fwd string) {
		r := New()
		r.SetTrusted(trusted)
		req := httptest.NewRequest("GET", "/", nil)
		req.RemoteAddr = remote
		if xff != "" {
			req.Header["X-Forwarded-For"] = []string{xff}
		}
		if fwd != "" {
			req.Header["Forwarded"] = []string{fwd}
		}
		got := r.Addr(req)
		ra, ok := remoteAddr(remote)
		if !ok {
			if got != hostOf(remote) {
				t.Fatalf("unparsable remote %q: %q", remote, got)
			}
			return
		}
		if !isTrusted(trusted, ra) {
			if got != ra.String() {
				t.Fatalf("untrusted remote %q: %q", remote, got)
			}
			return
		}
		a, err := netip.ParseAddr(got)
		if err != nil {
			t.Fatalf("Addr = %q, not an address", got)
		}
		if got != ra.String() && !mentions(xff+" "+fwd, a) {
			t.Fatalf("Addr = %q appears in neither header", got)
		}
	})
}

// mentions reports whether s holds some spelling of a.
func mentions(s string, a netip.Addr) bool {
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return strings.ContainsRune(` ,;="[]`+"\t", r) }) {
		if b, err := netip.ParseAddr(f); err == nil && b.Unmap() == a {
			return true
		}
		if ap, err := netip.ParseAddrPort(f); err == nil && ap.Addr().Unmap() == a {
			return true
		}
		if i := strings.LastIndexByte(f, ':'); i > 0 {
			if b, err := netip.ParseAddr(f[:i]); err == nil && b.Unmap() == a {
				return true
			}
		}
	}
	return false
}

// FuzzInfo: every value Info returns is valid UTF-8 without control
// characters and at most maxValue runes.
func FuzzInfo(f *testing.F) {
	f.Add(`"Windows"`, `"15.0.0"`, `"Google Chrome";v="123", "Not:A-Brand";v="8"`, "Mozilla/5.0 (Windows NT 10.0) Chrome/1")
	f.Add(`"a\"`, `"`, `"x";v=`, "Version/1 Safari/2 iPhone OS 1_2")
	f.Fuzz(func(t *testing.T, platform, version, brands, ua string) {
		req := httptest.NewRequest("GET", "/", nil)
		req.Header["Sec-Ch-Ua-Platform"] = []string{platform}
		req.Header["Sec-Ch-Ua-Platform-Version"] = []string{version}
		req.Header["Sec-Ch-Ua-Full-Version-List"] = []string{brands}
		req.Header["Sec-Ch-Ua"] = []string{brands}
		req.Header["User-Agent"] = []string{ua}
		info := New().Info(req)
		for _, v := range []string{info.Platform, info.PlatformVersion, info.ClientVersion} {
			if !utf8.ValidString(v) || utf8.RuneCountInString(v) > maxValue || strings.ContainsFunc(v, unicode.IsControl) {
				t.Fatalf("bad value %q", v)
			}
		}
	})
}
