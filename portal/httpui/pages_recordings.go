package httpui

import (
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/store"
	"github.com/keyway-dev/keyway/web/ui"
)

// Recordings: auditors and admins list, search, play and download session
// recordings. Playing (the player fetching the file) and downloading are
// audit events; listing and the metadata are not, as they show no session
// content beyond what the audit log already holds.

const (
	// recordingsPageSize is how many recordings the page lists at once.
	recordingsPageSize = 50
	// apiRecordingsLimit is the API's default and maximum page size.
	apiRecordingsLimit, apiRecordingsMax = 100, 500
	// maxFilterText bounds a filter value.
	maxFilterText = 200
)

// castType is the media type of asciicast files, as asciinema serves them.
const castType = "application/x-asciicast"

// recordingFilter reads the recording filters shared by the page and the
// API: user, resource, protocol, gateway, q (words in the output), since
// and until (start time; RFC 3339, or datetime-local read in tz), after (a
// page position).
func recordingFilter(r *http.Request) (store.RecordingFilter, ui.RecordingFilterView, error) {
	q := r.URL.Query()
	get := func(k string) string {
		v := strings.TrimSpace(q.Get(k))
		if len(v) > maxFilterText {
			v = v[:maxFilterText]
		}
		return v
	}
	fv := ui.RecordingFilterView{User: get("user"), Resource: get("resource"), Protocol: get("protocol"), Gateway: get("gateway"),
		Q: get("q"), Since: get("since"), Until: get("until"), TZ: get("tz")}
	f := store.RecordingFilter{User: fv.User, Resource: fv.Resource, Protocol: fv.Protocol, Gateway: fv.Gateway, Text: fv.Q}
	fe := fieldErrors{}
	loc := time.UTC
	if fv.TZ != "" {
		l, err := time.LoadLocation(fv.TZ)
		if err != nil {
			fe["since"] = "Unknown time zone " + fv.TZ + "."
		} else {
			loc = l
		}
	}
	for _, p := range []struct {
		name, v string
		dst     *time.Time
	}{{"since", fv.Since, &f.Since}, {"until", fv.Until, &f.Until}} {
		if p.v == "" {
			continue
		}
		t, err := parseTimeParam(p.v, loc)
		if err != nil {
			fe[p.name] = "Use a date and time such as 2026-01-31T14:00."
			continue
		}
		*p.dst = t
	}
	if v := q.Get("after"); v != "" {
		c, err := store.ParseRecordingCursor(v)
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

func recordingRow(rec store.Recording) ui.RecordingRow {
	return ui.RecordingRow{ID: rec.ID, SessionID: rec.SessionID, User: rec.User, Resource: rec.Resource, Protocol: rec.Protocol,
		Gateway: rec.Gateway, ClientAddr: rec.ClientAddr, Start: rec.Start, End: rec.End, Duration: rec.Duration(),
		Size: rec.Size, SHA256: rec.SHA256, Incomplete: rec.Incomplete, Input: rec.Input}
}

func (s *Server) recordingsPage(w http.ResponseWriter, r *http.Request) {
	page := s.page(r, "Recordings", "recordings")
	f, fv, err := recordingFilter(r)
	v := ui.RecordingsView{Filter: fv}
	if err != nil {
		if v.Errors = asFieldErrors(err); v.Errors == nil {
			s.serverError(w, r, err)
			return
		}
		s.render(w, r, http.StatusBadRequest, ui.Recordings(page, v))
		return
	}
	f.Limit = recordingsPageSize + 1 // one more tells whether a next page exists
	recs, err := s.Store.SearchRecordings(r.Context(), f)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	if len(recs) > recordingsPageSize {
		recs = recs[:recordingsPageSize]
		older := r.URL.Query()
		older.Set("after", store.CursorOf(recs[len(recs)-1]).String())
		v.OlderHref = "/recordings?" + older.Encode()
	}
	if f.After.ID > 0 {
		first := r.URL.Query()
		first.Del("after")
		v.FirstHref = "/recordings?" + first.Encode()
	}
	for _, rec := range recs {
		v.Recordings = append(v.Recordings, recordingRow(rec))
	}
	s.render(w, r, http.StatusOK, ui.Recordings(page, v))
}

// recordingAt loads the recording at the request's {id}.
func (s *Server) recordingAt(r *http.Request) (store.Recording, error) {
	id, err := pathID(r)
	if err != nil {
		return store.Recording{}, err
	}
	return s.Store.RecordingByID(r.Context(), id)
}

func (s *Server) playerPage(w http.ResponseWriter, r *http.Request) {
	rec, err := s.recordingAt(r)
	if err != nil {
		s.actionError(w, r, err, "/recordings")
		return
	}
	page := s.page(r, fmt.Sprintf("Recording: %s on %s", rec.User, rec.Resource), "recordings")
	page.Bundle = "player"
	// The player's terminal emulator is WebAssembly: this page alone may
	// compile it (no eval of scripts is allowed).
	w.Header().Set("Content-Security-Policy", strings.Replace(cspPolicy, "script-src 'self'", "script-src 'self' 'wasm-unsafe-eval'", 1))
	s.render(w, r, http.StatusOK, ui.Player(page, ui.PlayerView{
		Recording: recordingRow(rec), Playable: rec.Format == "asciicast",
		FileHref: fmt.Sprintf("/recordings/%d/file", rec.ID), DownloadHref: fmt.Sprintf("/recordings/%d/file?download=1", rec.ID),
	}))
}

// recordingFile serves a recording's bytes: inline for the player (a
// "view"), or as an attachment with ?download=1 (a "download").
func (s *Server) recordingFile(w http.ResponseWriter, r *http.Request) {
	rec, err := s.recordingAt(r)
	if err != nil {
		s.actionError(w, r, err, "/recordings")
		return
	}
	u, _ := currentUser(r)
	download := r.URL.Query().Get("download") != ""
	if err := s.serveRecording(w, r, u, rec, download); err != nil {
		s.serverError(w, r, err)
	}
}

// serveRecording sends rec's file and audits it.
func (s *Server) serveRecording(w http.ResponseWriter, r *http.Request, u store.User, rec store.Recording, download bool) error {
	f, err := s.Recordings.Open(rec.Path)
	if err != nil {
		return fmt.Errorf("open recording %d: %w", rec.ID, err)
	}
	defer f.Close()
	action, disposition := audit.ActionRecordingView, "inline"
	if download {
		action, disposition = audit.ActionRecordingDownload, "attachment"
	}
	s.record(r, audit.Event{Actor: u.Name, Action: action, Target: rec.Resource, Outcome: audit.OutcomeSuccess,
		Details: map[string]string{"recording": strconv.FormatInt(rec.ID, 10), "session": rec.SessionID, "user": rec.User}})
	name := fmt.Sprintf("keyway-%s-%s-%s.cast", rec.Resource, rec.User, rec.Start.UTC().Format("20060102T150405Z"))
	h := w.Header()
	h.Set("Content-Type", castType)
	h.Set("Content-Disposition", mime.FormatMediaType(disposition, map[string]string{"filename": name}))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-SHA256", rec.SHA256)
	http.ServeContent(w, r, "", time.Time{}, f)
	return nil
}

// --- JSON API

type apiRecording struct {
	ID              int64     `json:"id"`
	SessionID       string    `json:"session_id"`
	User            string    `json:"user"`
	Resource        string    `json:"resource"`
	Protocol        string    `json:"protocol"`
	Gateway         string    `json:"gateway"`
	ClientAddr      string    `json:"client_addr"`
	Format          string    `json:"format"`
	Start           time.Time `json:"start"`
	End             time.Time `json:"end"`
	DurationSeconds float64   `json:"duration_seconds"`
	Size            int64     `json:"size"`
	SHA256          string    `json:"sha256"`
	Incomplete      bool      `json:"incomplete"`
	Input           bool      `json:"input"`
	FileURL         string    `json:"file_url"`
}

func toAPIRecording(rec store.Recording) apiRecording {
	return apiRecording{rec.ID, rec.SessionID, rec.User, rec.Resource, rec.Protocol, rec.Gateway, rec.ClientAddr, rec.Format,
		rec.Start, rec.End, rec.Duration().Seconds(), rec.Size, rec.SHA256, rec.Incomplete, rec.Input,
		fmt.Sprintf("/api/v1/recordings/%d/file", rec.ID)}
}

func (s *Server) apiRecordings(w http.ResponseWriter, r *http.Request, _ store.User) error {
	f, _, err := recordingFilter(r)
	if err != nil {
		return err
	}
	f.Limit = apiRecordingsLimit
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > apiRecordingsMax {
			return fieldErrors{"limit": fmt.Sprintf("Give a number from 1 to %d.", apiRecordingsMax)}
		}
		f.Limit = n
	}
	want := f.Limit
	f.Limit++
	recs, err := s.Store.SearchRecordings(r.Context(), f)
	if err != nil {
		return err
	}
	out := struct {
		Recordings []apiRecording `json:"recordings"`
		// Next is the URL of the next (older) page, if any.
		Next string `json:"next,omitempty"`
	}{Recordings: []apiRecording{}}
	if len(recs) > want {
		recs = recs[:want]
		q := r.URL.Query()
		q.Set("after", store.CursorOf(recs[len(recs)-1]).String())
		out.Next = (&url.URL{Path: "/api/v1/recordings", RawQuery: q.Encode()}).String()
	}
	for _, rec := range recs {
		out.Recordings = append(out.Recordings, toAPIRecording(rec))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) apiRecording(w http.ResponseWriter, r *http.Request, _ store.User) error {
	rec, err := s.recordingAt(r)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, toAPIRecording(rec))
}

func (s *Server) apiRecordingFile(w http.ResponseWriter, r *http.Request, u store.User) error {
	rec, err := s.recordingAt(r)
	if err != nil {
		return err
	}
	return s.serveRecording(w, r, u, rec, true)
}
