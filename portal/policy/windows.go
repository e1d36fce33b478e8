package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/keyway-dev/keyway/portal/store"
)

// Bounds of what a policy holds: admins type these, and every connection
// reads them.
const (
	MaxWindows  = 20
	MaxNetworks = 100
	// maxWindowText bounds one window as text ("Mon, Tue, Wed … 09:00–17:00").
	maxWindowText = 200
	// maxZoneName bounds a time zone name (the longest IANA name has 30).
	maxZoneName = 64
	// minutesPerDay is the end of the last window of a day ("24:00").
	minutesPerDay = 24 * 60
)

// InWindows reports whether the wall-clock time of local (already in the
// policy's zone) falls in one of ws. A window includes the minute it opens
// and excludes the minute it closes; one that closes at or before it opens
// runs over midnight, and its days are the days it opens.
func InWindows(ws []store.PolicyWindow, local time.Time) bool {
	day := local.Weekday()
	prev := (day + 6) % 7
	m := local.Hour()*60 + local.Minute()
	for _, w := range ws {
		if w.From < w.To {
			if slices.Contains(w.Days, day) && w.From <= m && m < w.To {
				return true
			}
			continue
		}
		if (slices.Contains(w.Days, day) && m >= w.From) || (slices.Contains(w.Days, prev) && m < w.To) {
			return true
		}
	}
	return false
}

// windowsEnd returns when the windows stop allowing a connection that
// started at now (inside one of them): the end of the run of windows that
// holds now, following windows that adjoin or overlap. Zero means the run
// lasts a week or more (the windows cover all time).
func windowsEnd(ws []store.PolicyWindow, now time.Time, loc *time.Location) time.Time {
	type span struct{ start, end time.Time }
	local := now.In(loc)
	y, mo, d := local.Date()
	var spans []span
	// Windows opened up to a day before now can hold it; those opening in
	// the next 8 days can extend the run.
	for off := -1; off <= 8; off++ {
		day := time.Date(y, mo, d+off, 0, 0, 0, 0, loc)
		for _, w := range ws {
			if !slices.Contains(w.Days, day.Weekday()) {
				continue
			}
			dy, dm, dd := day.Date()
			start := time.Date(dy, dm, dd, w.From/60, w.From%60, 0, 0, loc)
			endDay := dd
			if w.To <= w.From {
				endDay++
			}
			end := time.Date(dy, dm, endDay, w.To/60, w.To%60, 0, 0, loc)
			if end.After(start) {
				spans = append(spans, span{start, end})
			}
		}
	}
	until := now
	for {
		next := until
		for _, s := range spans {
			if !s.start.After(until) && s.end.After(next) {
				next = s.end
			}
		}
		if !next.After(until) {
			break
		}
		until = next
		if until.Sub(now) >= 7*24*time.Hour {
			return time.Time{}
		}
	}
	if !until.After(now) {
		// The wall clock says inside but no span holds now: a DST edge.
		// Look again at the next minute.
		return now.Truncate(time.Minute).Add(time.Minute)
	}
	return until
}

// LoadZone loads an IANA time zone by name ("Europe/Paris", "UTC").
// "Local" is refused: it would mean whatever zone the portal's host is in.
func LoadZone(name string) (*time.Location, error) {
	if name == "" || name == "Local" || len(name) > maxZoneName {
		return nil, fmt.Errorf("%q is not a time zone name such as Europe/Paris or UTC", name)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("%q is not a time zone name such as Europe/Paris or UTC", name)
	}
	return loc, nil
}

var dayNames = [7]string{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}

// ParseDay reads a day of the week: "mon", "Monday", any case.
func ParseDay(s string) (time.Weekday, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	for i, n := range dayNames {
		full := strings.ToLower(time.Weekday(i).String())
		if t == strings.ToLower(n) || t == full {
			return time.Weekday(i), nil
		}
	}
	return 0, fmt.Errorf("%q is not a day of the week such as Mon or Monday", truncate(s, 20))
}

// mondayFirst orders days Monday to Sunday, as people list them.
func mondayFirst(d time.Weekday) int { return (int(d) + 6) % 7 }

// ParseDays reads days as people write them: "Mon-Fri", "Mon, Wed, Fri",
// "Sat–Sun", "every day" (or "daily"). A range runs forward through the
// week: "Fri-Mon" is Friday to Monday.
func ParseDays(s string) ([]time.Weekday, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	if t == "every day" || t == "daily" || t == "everyday" {
		return []time.Weekday{1, 2, 3, 4, 5, 6, 0}, nil
	}
	if t == "" {
		return nil, errors.New("give the days, such as Mon-Fri")
	}
	seen := [7]bool{}
	for _, part := range strings.Split(t, ",") {
		part = strings.TrimSpace(part)
		a, b, isRange := cutDash(part)
		from, err := ParseDay(a)
		if err != nil {
			return nil, err
		}
		to := from
		if isRange {
			if to, err = ParseDay(b); err != nil {
				return nil, err
			}
		}
		for d := from; ; d = (d + 1) % 7 {
			seen[d] = true
			if d == to {
				break
			}
		}
	}
	var out []time.Weekday
	for i := range 7 {
		if d := time.Weekday((i + 1) % 7); seen[d] {
			out = append(out, d)
		}
	}
	return out, nil
}

// cutDash splits "a-b" or "a–b" (en dash) around the dash.
func cutDash(s string) (string, string, bool) {
	for _, dash := range []string{"–", "—", "-"} {
		if a, b, ok := strings.Cut(s, dash); ok {
			return strings.TrimSpace(a), strings.TrimSpace(b), true
		}
	}
	return s, "", false
}

// FormatDays writes days as ParseDays reads them, shortest first: "every
// day", "Mon–Fri", "Mon, Wed, Fri".
func FormatDays(days []time.Weekday) string {
	var in [7]bool // Monday first
	for _, d := range days {
		if d >= 0 && d <= 6 {
			in[mondayFirst(d)] = true
		}
	}
	var parts []string
	n := 0
	for i := 0; i < 7; {
		if !in[i] {
			i++
			continue
		}
		j := i
		for j+1 < 7 && in[j+1] {
			j++
		}
		n += j - i + 1
		name := func(k int) string { return dayNames[(k+1)%7] }
		switch {
		case j-i >= 2:
			parts = append(parts, name(i)+"–"+name(j))
		case j == i+1:
			parts = append(parts, name(i), name(j))
		default:
			parts = append(parts, name(i))
		}
		i = j + 1
	}
	if n == 7 {
		return "every day"
	}
	return strings.Join(parts, ", ")
}

// ParseClock reads a time of day "HH:MM" (24-hour) as minutes after
// midnight; "24:00" is the end of the day.
func ParseClock(s string) (int, error) {
	t := strings.TrimSpace(s)
	h, m, ok := strings.Cut(t, ":")
	if strings.Trim(h, "0123456789") != "" || strings.Trim(m, "0123456789") != "" {
		ok = false // Atoi takes signs
	}
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || err1 != nil || err2 != nil || len(h) == 0 || len(h) > 2 || len(m) != 2 || hh < 0 || mm < 0 || mm > 59 ||
		hh > 24 || (hh == 24 && mm != 0) {
		return 0, fmt.Errorf("%q is not a time of day such as 09:00 or 17:30", truncate(s, 20))
	}
	return hh*60 + mm, nil
}

// FormatClock writes minutes after midnight as "HH:MM".
func FormatClock(m int) string { return fmt.Sprintf("%02d:%02d", m/60, m%60) }

// NewWindow checks and builds a window from its parts.
func NewWindow(days []time.Weekday, from, to int) (store.PolicyWindow, error) {
	switch {
	case len(days) == 0:
		return store.PolicyWindow{}, errors.New("give the days, such as Mon-Fri")
	case from < 0 || from >= minutesPerDay:
		return store.PolicyWindow{}, errors.New("a window opens between 00:00 and 23:59")
	case to < 0 || to > minutesPerDay:
		return store.PolicyWindow{}, errors.New("a window closes between 00:00 and 24:00")
	case from == to:
		return store.PolicyWindow{}, fmt.Errorf("the window %s–%s is empty: it closes when it opens", FormatClock(from), FormatClock(to))
	}
	for _, d := range days {
		if d < 0 || d > 6 {
			return store.PolicyWindow{}, errors.New("a day of the week is out of range")
		}
	}
	return store.PolicyWindow{Days: slices.Clone(days), From: from, To: to}, nil
}

// windowPattern is days, then a time range: "Mon-Fri 09:00-17:00".
var windowPattern = regexp.MustCompile(`^(.*?)\s+(\S+?)\s*[-–—]\s*(\S+)$`)

// ParseWindow reads one window: days then a time range, "Mon-Fri
// 09:00-17:00", "Sat, Sun 10:00 – 14:00", "every day 22:00-06:00" (over
// midnight).
func ParseWindow(s string) (store.PolicyWindow, error) {
	t := strings.TrimSpace(s)
	if len(t) > maxWindowText || !utf8.ValidString(t) {
		return store.PolicyWindow{}, fmt.Errorf("write a window in at most %d characters, such as Mon-Fri 09:00-17:00", maxWindowText)
	}
	m := windowPattern.FindStringSubmatch(t)
	if m == nil {
		return store.PolicyWindow{}, fmt.Errorf("%q: write days and hours, such as Mon-Fri 09:00-17:00", truncate(t, 40))
	}
	days, err := ParseDays(m[1])
	if err != nil {
		return store.PolicyWindow{}, err
	}
	from, err := ParseClock(m[2])
	if err != nil {
		return store.PolicyWindow{}, err
	}
	to, err := ParseClock(m[3])
	if err != nil {
		return store.PolicyWindow{}, err
	}
	return NewWindow(days, from, to)
}

// ParseWindows reads one window per line (blank lines are skipped); an
// error names the line.
func ParseWindows(text string) ([]store.PolicyWindow, error) {
	var out []store.PolicyWindow
	n := 0
	for line := range strings.Lines(text) {
		n++
		if strings.TrimSpace(line) == "" {
			continue
		}
		if len(out) == MaxWindows {
			return nil, fmt.Errorf("give at most %d windows", MaxWindows)
		}
		w, err := ParseWindow(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		out = append(out, w)
	}
	return out, nil
}

// FormatWindow writes a window as ParseWindow reads it.
func FormatWindow(w store.PolicyWindow) string {
	return FormatDays(w.Days) + " " + FormatClock(w.From) + "–" + FormatClock(w.To)
}

// FormatWindows lists windows for people: "Mon–Fri 09:00–17:00 and Sat
// 10:00–12:00".
func FormatWindows(ws []store.PolicyWindow) string {
	parts := make([]string, 0, len(ws))
	for _, w := range ws {
		parts = append(parts, FormatWindow(w))
	}
	return joinAnd(parts)
}

// ParseNetworks reads client networks: CIDRs or single addresses, as a
// list or separated by commas, spaces or new lines. Hosts bits are
// cleared, and IPv4-mapped IPv6 networks become IPv4 ones, because client
// addresses are compared unmapped.
func ParseNetworks(items ...string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, item := range items {
		// Lazily: a megabyte of separators must not become a huge slice
		// before the count is checked.
		for f := range strings.FieldsFuncSeq(item, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\r' || r == '\t' }) {
			if len(out) == MaxNetworks {
				return nil, fmt.Errorf("give at most %d networks", MaxNetworks)
			}
			p, err := parseNetwork(f)
			if err != nil {
				return nil, err
			}
			out = append(out, p)
		}
	}
	return out, nil
}

func parseNetwork(s string) (netip.Prefix, error) {
	bad := fmt.Errorf("%q is not a network such as 10.0.0.0/8 or 2001:db8::/32, or an address", truncate(s, 60))
	p, err := netip.ParsePrefix(s)
	if err != nil {
		a, aerr := netip.ParseAddr(s)
		if aerr != nil || a.Zone() != "" {
			return netip.Prefix{}, bad
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if p.Addr().Is4In6() {
		if p.Bits() < 96 {
			return netip.Prefix{}, fmt.Errorf("%q mixes IPv4-mapped and other IPv6 addresses; give the IPv4 network instead", truncate(s, 60))
		}
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n]) + "…"
}
