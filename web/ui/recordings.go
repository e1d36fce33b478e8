package ui

import (
	"fmt"
	"time"
)

// RecordingFilterView is the recordings filter form's values.
type RecordingFilterView struct {
	User     string
	Resource string
	Protocol string
	Gateway  string
	Q        string
	Since    string
	Until    string
	TZ       string
}

// Any reports whether a filter is set.
func (f RecordingFilterView) Any() bool {
	return f.User != "" || f.Resource != "" || f.Protocol != "" || f.Gateway != "" || f.Q != "" || f.Since != "" || f.Until != ""
}

// RecordingRow is one recording in the list, or the player's facts.
type RecordingRow struct {
	ID         int64
	SessionID  string
	User       string
	Resource   string
	Protocol   string
	Gateway    string
	ClientAddr string
	Start      time.Time
	End        time.Time
	Duration   time.Duration
	Size       int64
	SHA256     string
	Incomplete bool
	Input      bool
}

// Href is the player page.
func (r RecordingRow) Href() string { return fmt.Sprintf("/recordings/%d", r.ID) }

// RecordingsView is the recordings page.
type RecordingsView struct {
	Filter     RecordingFilterView
	Recordings []RecordingRow
	// OlderHref pages on; FirstHref returns to the newest.
	OlderHref string
	FirstHref string
	Errors    Errors
}

// PlayerView is a recording's player page.
type PlayerView struct {
	Recording RecordingRow
	// FileHref serves the recording for the player; DownloadHref as an
	// attachment.
	FileHref     string
	DownloadHref string
	Playable     bool
	// Desktop recordings play in the desktop player, which reads the
	// timeline and key frames at KeyFramesHref.
	Desktop       bool
	KeyFramesHref string
	// Export is the desktop recording's video export.
	Export ExportView
}

// ExportView is the video export of a desktop recording.
type ExportView struct {
	// Available is false where the portal has no ffmpeg.
	Available bool
	// State is "" (none asked for), "queued", "running", "done" or
	// "failed"; Percent the progress while running; Reason why it
	// failed; Size the video's, once done.
	State   string
	Percent int
	Reason  string
	Size    int64
	// StartHref takes the form's POST; StatusHref serves the state as
	// JSON; VideoHref the video.
	StartHref  string
	StatusHref string
	VideoHref  string
}

// Busy reports an export queued or running.
func (v ExportView) Busy() bool { return v.State == "queued" || v.State == "running" }

// Progress says how far the export is, in words.
func (v ExportView) Progress() string {
	if v.State == "queued" {
		return "Waiting for another export to finish…"
	}
	return fmt.Sprintf("Exporting the video… %d%%", v.Percent)
}

// duration shows a session's length as 1h02m03s, 4m05s or 6s.
func duration(d time.Duration) string {
	d = d.Round(time.Second)
	h, m, s := int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60
	switch {
	case h > 0:
		return fmt.Sprintf("%dh%02dm%02ds", h, m, s)
	case m > 0:
		return fmt.Sprintf("%dm%02ds", m, s)
	}
	return fmt.Sprintf("%ds", s)
}

// byteSize shows a size in B, KiB, MiB or GiB.
func byteSize(n int64) string {
	const k = 1024
	switch {
	case n >= k*k*k:
		return fmt.Sprintf("%.1f GiB", float64(n)/(k*k*k))
	case n >= k*k:
		return fmt.Sprintf("%.1f MiB", float64(n)/(k*k))
	case n >= k:
		return fmt.Sprintf("%.1f KiB", float64(n)/k)
	}
	return fmt.Sprintf("%d B", n)
}
