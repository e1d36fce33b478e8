package ui

import "time"

// ConnectionFilterView is the connection history filter form's values.
type ConnectionFilterView struct {
	User     string
	Resource string
	Protocol string
	Gateway  string
	Result   string
	Q        string
	Since    string
	Until    string
	TZ       string
}

// Any reports whether a filter is set.
func (f ConnectionFilterView) Any() bool {
	return f.User != "" || f.Resource != "" || f.Protocol != "" || f.Gateway != "" || f.Result != "" || f.Q != "" ||
		f.Since != "" || f.Until != ""
}

// ConnectionRow is one connection attempt in the history.
type ConnectionRow struct {
	ID         int64
	SessionID  string
	Start      time.Time
	User       string
	ClientAddr string
	Resource   string
	Protocol   string
	Gateway    string
	Segment    string
	// Result is "connected", "refused" or "failed".
	Result string
	// Reason is the machine code, Message the words the user saw.
	Reason  string
	Message string
	Posture []string
	// Running is a connected session without an end; Ran is one that
	// connected (Duration and the byte counts mean something).
	Running bool
	Ran     bool
	// Interrupted sessions ran when the portal stopped: their end and
	// traffic are not known.
	Interrupted bool
	Duration    time.Duration
	BytesIn     int64
	BytesOut    int64
}

// ConnectionsView is the Sessions page's History view.
type ConnectionsView struct {
	Filter ConnectionFilterView
	Rows   []ConnectionRow
	// Protocols and Results are the filter's choices.
	Protocols []string
	Results   []string
	// OlderHref pages on; FirstHref returns to the newest; ExportHref
	// downloads every matching attempt as CSV.
	OlderHref  string
	FirstHref  string
	ExportHref string
	Errors     Errors
}

// resultClass is the badge of a connection's result.
func resultClass(r string) string {
	switch r {
	case "connected":
		return "badge ok"
	case "failed":
		return "badge bad"
	case "refused":
		return "badge warn"
	}
	return "badge"
}
