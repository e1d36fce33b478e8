package httpui

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/exports"
	"github.com/keyway-dev/keyway/portal/store"
	"github.com/keyway-dev/keyway/web/ui"
)

// Video exports of desktop recordings: an auditor asks for one on the
// player page (a form, so it works without script), the page follows its
// progress through a small JSON status, then offers the file. Asking and
// downloading are audit events; the status is not (it shows no content).

// noFFmpeg is what the portal says where video export would be.
const noFFmpeg = "Video export needs ffmpeg installed on the portal."

// exportView is the export part of a desktop recording's player page.
func (s *Server) exportView(rec store.Recording) ui.ExportView {
	v := ui.ExportView{Available: s.Exports != nil, StartHref: fmt.Sprintf("/recordings/%d/export", rec.ID),
		StatusHref: fmt.Sprintf("/recordings/%d/export", rec.ID), VideoHref: fmt.Sprintf("/recordings/%d/video", rec.ID)}
	if s.Exports == nil {
		return v
	}
	j := s.Exports.Status(rec)
	v.State, v.Percent, v.Reason, v.Size = string(j.State), percent(j.Progress), j.Reason, j.Size
	return v
}

// percent shows progress as a whole percentage, 100 only when done.
func percent(p float64) int {
	return int(math.Min(99, math.Floor(100*p)))
}

// exportStatusView is the JSON the player page polls.
type exportStatusView struct {
	// State is "none", "queued", "running", "done" or "failed".
	State   string `json:"state"`
	Percent int    `json:"percent"`
	// Reason says why a failed export failed.
	Reason string `json:"reason,omitempty"`
	// VideoURL and Size are the video's, once done.
	VideoURL string `json:"video_url,omitempty"`
	Size     int64  `json:"size,omitempty"`
}

// desktopRecording loads the request's recording for an export route,
// answering the request itself when there is none to export.
func (s *Server) desktopRecording(w http.ResponseWriter, r *http.Request) (store.Recording, bool) {
	rec, err := s.recordingAt(r)
	if err != nil {
		s.actionError(w, r, err, "/recordings")
		return rec, false
	}
	if s.Exports == nil {
		s.renderError(w, r, http.StatusNotImplemented, noFFmpeg)
		return rec, false
	}
	if rec.Format != formatGuac {
		s.renderError(w, r, http.StatusNotFound, "Only desktop recordings can be exported as video.")
		return rec, false
	}
	return rec, true
}

func exportDetails(rec store.Recording) map[string]string {
	return map[string]string{"recording": strconv.FormatInt(rec.ID, 10), "session": rec.SessionID, "user": rec.User}
}

// startExport asks for a recording's video and returns to its page.
func (s *Server) startExport(w http.ResponseWriter, r *http.Request) {
	rec, ok := s.desktopRecording(w, r)
	if !ok {
		return
	}
	u, _ := currentUser(r)
	back := fmt.Sprintf("/recordings/%d#video-export", rec.ID)
	ev := audit.Event{Actor: u.Name, Action: audit.ActionRecordingExport, Target: rec.Resource, Outcome: audit.OutcomeSuccess,
		Details: exportDetails(rec)}
	j, err := s.Exports.Request(rec)
	switch {
	case errors.Is(err, exports.ErrQueueFull):
		ev.Outcome, ev.Reason = audit.OutcomeFailure, err.Error()
		s.record(r, ev)
		s.setFlash(r, "error", sentenceOf(err.Error()))
		http.Redirect(w, r, back, http.StatusSeeOther)
		return
	case err != nil:
		s.serverError(w, r, err)
		return
	}
	ev.Details["export"] = "queued"
	if j.State == exports.Done {
		ev.Details["export"] = "reused"
	}
	s.record(r, ev)
	http.Redirect(w, r, back, http.StatusSeeOther)
}

// sentenceOf starts s with a capital and ends it with a full stop.
func sentenceOf(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:] + "."
}

// exportStatus serves the state of a recording's export as JSON.
func (s *Server) exportStatus(w http.ResponseWriter, r *http.Request) {
	rec, ok := s.desktopRecording(w, r)
	if !ok {
		return
	}
	v := s.exportView(rec)
	out := exportStatusView{State: v.State, Percent: v.Percent, Reason: v.Reason}
	switch v.State {
	case "":
		out.State = "none"
	case string(exports.Done):
		out.Percent, out.VideoURL, out.Size = 100, v.VideoHref, v.Size
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, out)
}

// exportVideo serves a recording's video as an attachment.
func (s *Server) exportVideo(w http.ResponseWriter, r *http.Request) {
	rec, ok := s.desktopRecording(w, r)
	if !ok {
		return
	}
	f, err := s.Exports.Open(r.Context(), rec)
	if errors.Is(err, fs.ErrNotExist) {
		s.renderError(w, r, http.StatusNotFound, "This recording has not been exported as video yet; use Export video on its page.")
		return
	}
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	defer f.Close()
	u, _ := currentUser(r)
	s.record(r, audit.Event{Actor: u.Name, Action: audit.ActionRecordingExportDownload, Target: rec.Resource, Outcome: audit.OutcomeSuccess,
		Details: exportDetails(rec)})
	name := fmt.Sprintf("keyway-%s-%s-%s.mp4", rec.Resource, rec.User, rec.Start.UTC().Format("20060102T150405Z"))
	h := w.Header()
	h.Set("Content-Type", "video/mp4")
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
	h.Set("Cache-Control", "no-store")
	http.ServeContent(w, r, "", time.Time{}, f)
}
