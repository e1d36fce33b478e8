package httpui

import (
	"encoding/csv"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/store"
	"github.com/keyway-dev/keyway/web/ui"
)

// The connection log: auditors and admins list every connection attempt
// (refused, failed or connected) on the Sessions page's History view,
// download it as CSV (an audit event, as the audit log's export is) and
// read it through GET /api/v1/connections.

const (
	// connectionsPageSize is how many attempts the page lists at once.
	connectionsPageSize = 50
	// apiConnectionsLimit is the API's default and maximum page size.
	apiConnectionsLimit, apiConnectionsMax = 100, 1000
	// connectionsExportBatch is how many attempts the CSV export reads at
	// a time.
	connectionsExportBatch = 1000
)

// connectionProtocols and connectionResults are the values the filters
// take; anything else is a mistake worth saying.
var (
	connectionProtocols = []string{"ssh", "sftp", "rdp", "vnc", "tcp"}
	connectionResults   = []string{store.ConnectionConnected, store.ConnectionRefused, store.ConnectionFailed}
)

// connectionFilter reads the filters shared by the page, the CSV export
// and the API: user, resource, protocol, gateway, result, q (words of the
// reason or message), since and until (start time; RFC 3339, or
// datetime-local read in tz), after (a page position).
func connectionFilter(r *http.Request) (store.ConnectionFilter, ui.ConnectionFilterView, error) {
	q := r.URL.Query()
	get := func(k string) string {
		v := strings.TrimSpace(q.Get(k))
		if len(v) > maxFilterText {
			v = v[:maxFilterText]
		}
		return v
	}
	fv := ui.ConnectionFilterView{User: get("user"), Resource: get("resource"), Protocol: get("protocol"), Gateway: get("gateway"),
		Result: get("result"), Q: get("q"), Since: get("since"), Until: get("until"), TZ: get("tz")}
	f := store.ConnectionFilter{User: fv.User, Resource: fv.Resource, Protocol: fv.Protocol, Gateway: fv.Gateway, Result: fv.Result, Text: fv.Q}
	fe := fieldErrors{}
	if fv.Protocol != "" && !slices.Contains(connectionProtocols, fv.Protocol) {
		fe["protocol"] = "Choose one of " + strings.Join(connectionProtocols, ", ") + "."
	}
	if fv.Result != "" && !slices.Contains(connectionResults, fv.Result) {
		fe["result"] = "Choose one of " + strings.Join(connectionResults, ", ") + "."
	}
	f.Since, f.Until = parseTimeRange(fe, fv.TZ, fv.Since, fv.Until)
	if v := q.Get("after"); v != "" {
		c, err := store.ParseConnectionCursor(v)
		if err != nil {
			fe["after"] = "Not a valid page position."
		}
		f.After = c
	}
	if len(fe) > 0 {
		return f, fv, fe
	}
	return f, fv, nil
}

func connectionRow(c store.Connection) ui.ConnectionRow {
	return ui.ConnectionRow{ID: c.ID, SessionID: c.SessionID, Start: c.Start, User: c.User, ClientAddr: c.ClientAddr, Resource: c.Resource,
		Protocol: c.Protocol, Gateway: c.Gateway, Segment: c.Segment, Result: c.Result, Reason: c.Reason, Message: c.Message,
		Posture: c.Posture, Running: c.Running(), Ran: c.Result == store.ConnectionConnected, Duration: c.Duration(),
		Interrupted: c.Result == store.ConnectionConnected && c.Reason == store.ReasonInterrupted,
		BytesIn:     c.BytesIn, BytesOut: c.BytesOut}
}

func (s *Server) connectionsPage(w http.ResponseWriter, r *http.Request) {
	page := s.page(r, "Connection history", "sessions")
	f, fv, err := connectionFilter(r)
	v := ui.ConnectionsView{Filter: fv, Protocols: connectionProtocols, Results: connectionResults}
	if err != nil {
		if v.Errors = asFieldErrors(err); v.Errors == nil {
			s.serverError(w, r, err)
			return
		}
		s.render(w, r, http.StatusBadRequest, ui.ConnectionHistory(page, v))
		return
	}
	f.Limit = connectionsPageSize + 1 // one more tells whether a next page exists
	cs, err := s.Store.Connections(r.Context(), f)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	if len(cs) > connectionsPageSize {
		cs = cs[:connectionsPageSize]
		older := r.URL.Query()
		older.Set("after", cs[len(cs)-1].CursorAfter().String())
		v.OlderHref = "/sessions/history?" + older.Encode()
	}
	if f.After.ID > 0 {
		first := r.URL.Query()
		first.Del("after")
		v.FirstHref = "/sessions/history?" + first.Encode()
	}
	export := r.URL.Query()
	export.Del("after")
	v.ExportHref = "/sessions/history.csv?" + export.Encode()
	for _, c := range cs {
		v.Rows = append(v.Rows, connectionRow(c))
	}
	s.render(w, r, http.StatusOK, ui.ConnectionHistory(page, v))
}

// connectionsCSV streams every attempt matching the History view's
// filters as CSV, newest first. The export is itself an audit event.
func (s *Server) connectionsCSV(w http.ResponseWriter, r *http.Request) {
	u, _ := currentUser(r)
	f, _, err := connectionFilter(r)
	if err != nil {
		s.renderError(w, r, http.StatusBadRequest, "The filters are not valid: "+err.Error())
		return
	}
	f.After, f.Limit = store.ConnectionCursor{}, connectionsExportBatch
	s.record(r, audit.Event{Actor: u.Name, Action: audit.ActionConnectionExport, Target: "connection log", Outcome: audit.OutcomeSuccess,
		Details: map[string]string{"filters": r.URL.RawQuery}})
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="keyway-connections-%s.csv"`, s.Now().UTC().Format("20060102-150405")))
	cw := csv.NewWriter(w)
	cw.Write([]string{"id", "start_utc", "end_utc", "duration_seconds", "user", "client_address", "resource", "protocol", "gateway",
		"segment", "result", "reason", "message", "posture", "bytes_in", "bytes_out", "session_id"})
	for {
		cs, err := s.Store.Connections(r.Context(), f)
		if err != nil {
			s.Logger.ErrorContext(r.Context(), "connection log export", "err", err)
			return // the download ends short; the browser shows it failed
		}
		for _, c := range cs {
			var end, dur string
			if !c.End.IsZero() {
				end = c.End.UTC().Format(time.RFC3339Nano)
				dur = strconv.FormatFloat(c.Duration().Seconds(), 'f', -1, 64)
			}
			cw.Write([]string{strconv.FormatInt(c.ID, 10), c.Start.UTC().Format(time.RFC3339Nano), end, dur, csvCell(c.User),
				csvCell(c.ClientAddr), csvCell(c.Resource), csvCell(c.Protocol), csvCell(c.Gateway), csvCell(c.Segment), c.Result,
				csvCell(c.Reason), csvCell(c.Message), csvCell(strings.Join(c.Posture, "; ")),
				strconv.FormatInt(c.BytesIn, 10), strconv.FormatInt(c.BytesOut, 10), csvCell(c.SessionID)})
		}
		cw.Flush()
		if cw.Error() != nil || len(cs) < f.Limit {
			return
		}
		f.After = cs[len(cs)-1].CursorAfter()
	}
}

// apiConnection is a connection attempt in the API. End and
// DurationSeconds are null while the session runs and for attempts that
// never ran.
type apiConnection struct {
	ID              int64      `json:"id"`
	SessionID       string     `json:"session_id"`
	Start           time.Time  `json:"start"`
	End             *time.Time `json:"end"`
	DurationSeconds *float64   `json:"duration_seconds"`
	User            string     `json:"user"`
	ClientAddr      string     `json:"client_addr"`
	Resource        string     `json:"resource"`
	Protocol        string     `json:"protocol"`
	Gateway         string     `json:"gateway"`
	Segment         string     `json:"segment"`
	Result          string     `json:"result"`
	Reason          string     `json:"reason"`
	Message         string     `json:"message"`
	Posture         []string   `json:"posture"`
	Running         bool       `json:"running"`
	BytesIn         int64      `json:"bytes_in"`
	BytesOut        int64      `json:"bytes_out"`
}

func toAPIConnection(c store.Connection) apiConnection {
	a := apiConnection{ID: c.ID, SessionID: c.SessionID, Start: c.Start, User: c.User, ClientAddr: c.ClientAddr, Resource: c.Resource,
		Protocol: c.Protocol, Gateway: c.Gateway, Segment: c.Segment, Result: c.Result, Reason: c.Reason, Message: c.Message,
		Posture: c.Posture, Running: c.Running(), BytesIn: c.BytesIn, BytesOut: c.BytesOut}
	if a.Posture == nil {
		a.Posture = []string{}
	}
	if !c.End.IsZero() {
		end, d := c.End, c.Duration().Seconds()
		a.End, a.DurationSeconds = &end, &d
	}
	return a
}

func (s *Server) apiConnections(w http.ResponseWriter, r *http.Request, _ store.User) error {
	f, _, err := connectionFilter(r)
	if err != nil {
		return err
	}
	if f.Limit, err = apiLimit(r, apiConnectionsLimit, apiConnectionsMax); err != nil {
		return err
	}
	want := f.Limit
	f.Limit++
	cs, err := s.Store.Connections(r.Context(), f)
	if err != nil {
		return err
	}
	out := struct {
		Connections []apiConnection `json:"connections"`
		// Next is the URL of the next (older) page, if any.
		Next string `json:"next,omitempty"`
	}{Connections: []apiConnection{}}
	if len(cs) > want {
		cs = cs[:want]
		q := r.URL.Query()
		q.Set("after", cs[len(cs)-1].CursorAfter().String())
		out.Next = (&url.URL{Path: "/api/v1/connections", RawQuery: q.Encode()}).String()
	}
	for _, c := range cs {
		out.Connections = append(out.Connections, toAPIConnection(c))
	}
	return writeJSON(w, http.StatusOK, out)
}
