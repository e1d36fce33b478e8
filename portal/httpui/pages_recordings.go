package httpui

import (
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/store"
	"github.com/keyway-dev/keyway/recordings/guacrec"
	"github.com/keyway-dev/keyway/recordings/guacseek"
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
	f.Since, f.Until = parseTimeRange(fe, fv.TZ, fv.Since, fv.Until)
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
	v := ui.PlayerView{
		Recording: recordingRow(rec), Playable: rec.Format == formatCast || rec.Format == formatGuac,
		FileHref: fmt.Sprintf("/recordings/%d/file", rec.ID), DownloadHref: fmt.Sprintf("/recordings/%d/file?download=1", rec.ID),
	}
	if rec.Format == formatGuac {
		page.Bundle = "replay"
		v.Desktop, v.KeyFramesHref = true, fmt.Sprintf("/recordings/%d/keyframes", rec.ID)
		v.Export = s.exportView(rec)
	} else {
		page.Bundle = "player"
		// The player's terminal emulator is WebAssembly: this page alone may
		// compile it (no eval of scripts is allowed).
		w.Header().Set("Content-Security-Policy", strings.Replace(cspPolicy, "script-src 'self'", "script-src 'self' 'wasm-unsafe-eval'", 1))
	}
	s.render(w, r, http.StatusOK, ui.Player(page, v))
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
	if (r.URL.Query().Has("keyframe") || r.URL.Query().Has("until")) && !download && rec.Format == formatGuac {
		n, err := strconv.Atoi(r.URL.Query().Get("keyframe"))
		if err != nil || n < 0 {
			s.renderError(w, r, http.StatusBadRequest, "The key frame must be a number.")
			return
		}
		until := 0
		if v := r.URL.Query().Get("until"); v != "" {
			if until, err = strconv.Atoi(v); err != nil || until <= n {
				s.renderError(w, r, http.StatusBadRequest, "The last key frame must be a number after the first.")
				return
			}
		}
		at := int64(-1)
		if v := r.URL.Query().Get("at"); v != "" {
			if at, err = strconv.ParseInt(v, 10, 64); err != nil || at < 0 {
				s.renderError(w, r, http.StatusBadRequest, "The time to start at must be a number of milliseconds.")
				return
			}
		}
		if err := s.serveFromKeyFrame(w, r, u, rec, n, until, at); err != nil {
			s.serverError(w, r, err)
		}
		return
	}
	if err := s.serveRecording(w, r, u, rec, download); err != nil {
		s.serverError(w, r, err)
	}
}

// serveFromKeyFrame sends a desktop recording from its key frame n (1 is
// the index's first; 0 the start), itself a recording the player plays
// without what came before: seeking in a long recording fetches and
// replays only from the key frame before the point sought. With until (a
// later key frame; 0 for none) it stops where that key frame starts, so
// the player fetches a long recording a window at a time. With at (ms
// from the first frame, as the timeline counts; -1 for none) the frames
// from the key frame to that time are drawn here (guacseek), and the
// player gets one frame of the screen at that time, then what follows.
func (s *Server) serveFromKeyFrame(w http.ResponseWriter, r *http.Request, u store.User, rec store.Recording, n, until int, at int64) error {
	ix, err := s.Recordings.Index(r.Context(), rec.Path)
	if err != nil {
		s.Logger.WarnContext(r.Context(), "recording index unreadable; using the key frames before the damage", "recording", rec.ID, "err", err)
	}
	if n > len(ix) || until > len(ix) {
		s.renderError(w, r, http.StatusNotFound, "This recording has no such key frame.")
		return nil
	}
	f, err := s.Recordings.Open(r.Context(), rec.Path)
	if err != nil {
		return fmt.Errorf("open recording %d: %w", rec.ID, err)
	}
	defer f.Close()
	from := guacrec.KeyFrame{}
	if n > 0 {
		from = ix[n-1]
	}
	st, err := guacrec.Stream(f, rec.Size, from)
	if err != nil {
		return fmt.Errorf("recording %d from key frame %d: %w", rec.ID, n, err)
	}
	if until > 0 {
		st = io.NewSectionReader(f, from.Offset, ix[until-1].Offset-from.Offset)
	}
	details := map[string]string{"recording": strconv.FormatInt(rec.ID, 10), "session": rec.SessionID, "user": rec.User,
		"keyframe": strconv.Itoa(n)}
	var body io.Reader
	var length int64
	if at >= 0 {
		first, _ := syncTimes(io.NewSectionReader(f, 0, rec.Size), true)
		if body, length, err = guacseek.From(st, st.Size(), first+at); err != nil {
			// The player gets the key frame and what follows, as without at,
			// and replays what it can of it.
			s.Logger.WarnContext(r.Context(), "recording not drawn at the time sought; sending it from its key frame", "recording", rec.ID, "at_ms", at, "err", err)
			body = nil
		}
		details["at_ms"] = strconv.FormatInt(at, 10)
	}
	s.record(r, audit.Event{Actor: u.Name, Action: audit.ActionRecordingView, Target: rec.Resource, Outcome: audit.OutcomeSuccess,
		Details: details})
	h := w.Header()
	h.Set("Content-Type", guacType)
	h.Set("Cache-Control", "no-store")
	if body == nil {
		http.ServeContent(w, r, "", time.Time{}, st)
		return nil
	}
	h.Set("Content-Length", strconv.FormatInt(length, 10))
	if r.Method != http.MethodHead {
		// The browser may leave mid-way; nothing to do about it here.
		io.Copy(w, body)
	}
	return nil
}

// guacType is the media type the portal gives desktop recordings.
const guacType = "application/x-guacamole"

// maxTimelineScan bounds the bytes read to find a desktop recording's
// first and last frame times for its timeline: the first frame (a whole
// screen) and what follows the last key frame are far smaller.
const maxTimelineScan = 256 << 20

// keyFramesView is what the desktop player needs to draw its timeline and
// seek: times in milliseconds from the first frame.
type keyFramesView struct {
	DurationMS int64 `json:"duration_ms"`
	// KeyFrames are the times of the places playback can start from, the
	// start (0) first; ?keyframe=N of the file starts at KeyFrames[N].
	KeyFrames []int64 `json:"keyframes"`
}

// recordingKeyFrames serves a desktop recording's timeline: its length
// and where its key frames are.
func (s *Server) recordingKeyFrames(w http.ResponseWriter, r *http.Request) {
	rec, err := s.recordingAt(r)
	if err != nil {
		s.actionError(w, r, err, "/recordings")
		return
	}
	if rec.Format != formatGuac {
		s.renderError(w, r, http.StatusNotFound, "Only desktop recordings have key frames.")
		return
	}
	ix, err := s.Recordings.Index(r.Context(), rec.Path)
	if err != nil {
		s.Logger.WarnContext(r.Context(), "recording index unreadable; using the key frames before the damage", "recording", rec.ID, "err", err)
	}
	f, err := s.Recordings.Open(r.Context(), rec.Path)
	if err != nil {
		s.serverError(w, r, fmt.Errorf("open recording %d: %w", rec.ID, err))
		return
	}
	defer f.Close()
	first, _ := syncTimes(io.NewSectionReader(f, 0, rec.Size), true)
	var from guacrec.KeyFrame
	if len(ix) > 0 {
		from = ix[len(ix)-1]
	}
	st, err := guacrec.Stream(f, rec.Size, from)
	last := first
	if err == nil {
		_, last = syncTimes(st, false)
	}
	v := keyFramesView{DurationMS: max(0, last-first), KeyFrames: []int64{0}}
	if !rec.Incomplete {
		// A still screen sends no frames: the session went on, on the
		// gateway's clock, until its end. (An incomplete recording's end
		// is when the gateway found it, maybe much later.)
		v.DurationMS = max(v.DurationMS, rec.End.UnixMilli()-first)
	}
	for _, kf := range ix {
		v.KeyFrames = append(v.KeyFrames, max(0, kf.Timestamp-first))
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, v)
}

// syncTimes returns the first and the last sync time in a recording,
// reading up to maxTimelineScan bytes, or stopping at the first with
// onlyFirst. A recording cut short gives the times up to the cut.
func syncTimes(r io.Reader, onlyFirst bool) (first, last int64) {
	rd := guacrec.NewReader(io.LimitReader(r, maxTimelineScan), guacrec.RecordingLimits)
	seen := false
	for {
		in, err := rd.Next()
		if err != nil {
			return first, last
		}
		if in.Opcode != "sync" || len(in.Args) == 0 {
			continue
		}
		ts, err := strconv.ParseInt(in.Args[0], 10, 64)
		if err != nil {
			continue
		}
		if !seen {
			first, seen = ts, true
			if onlyFirst {
				return first, ts
			}
		}
		last = max(last, ts)
	}
}

// serveRecording sends rec's file and audits it.
func (s *Server) serveRecording(w http.ResponseWriter, r *http.Request, u store.User, rec store.Recording, download bool) error {
	f, err := s.Recordings.Open(r.Context(), rec.Path)
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
	ext, ctype := ".cast", castType
	if rec.Format == formatGuac {
		ext, ctype = ".guac", guacType
	}
	name := fmt.Sprintf("keyway-%s-%s-%s%s", rec.Resource, rec.User, rec.Start.UTC().Format("20060102T150405Z"), ext)
	h := w.Header()
	h.Set("Content-Type", ctype)
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
	if f.Limit, err = apiLimit(r, apiRecordingsLimit, apiRecordingsMax); err != nil {
		return err
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

// parseTimeRange reads a filter's "since" and "until" fields, times in the
// browser's time zone tz, noting what it cannot read in fe; an empty or
// unreadable field is the zero time.
func parseTimeRange(fe fieldErrors, tz, since, until string) (from, to time.Time) {
	loc := time.UTC
	if tz != "" {
		l, err := time.LoadLocation(tz)
		if err != nil {
			fe["since"] = "Unknown time zone " + tz + "."
		} else {
			loc = l
		}
	}
	for _, p := range []struct {
		name, v string
		dst     *time.Time
	}{{"since", since, &from}, {"until", until, &to}} {
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
	return from, to
}

// apiLimit reads an API listing's "limit" parameter: def when absent,
// from 1 to max.
func apiLimit(r *http.Request, def, max int) (int, error) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > max {
		return 0, fieldErrors{"limit": fmt.Sprintf("Give a number from 1 to %d.", max)}
	}
	return n, nil
}
