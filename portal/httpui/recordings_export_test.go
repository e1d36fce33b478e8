package httpui

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/gateway/guac"
	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/exports"
	"github.com/keyway-dev/keyway/portal/store"
	"github.com/keyway-dev/keyway/recordings/storage"
	"github.com/keyway-dev/keyway/recordings/video"
)

// desktopRecording is a two-second desktop recording: a 64×48 screen,
// blue, then red.
func desktopRecording() []byte {
	var b []byte
	add := func(op string, args ...any) {
		s := make([]string, len(args))
		for i, a := range args {
			s[i] = fmt.Sprint(a)
		}
		b = guac.New(op, s...).AppendTo(b)
	}
	const start = 1772600767000 // 2026-03-04T05:06:07Z
	add("size", 0, 64, 48)
	for i, c := range []color.RGBA{{0x33, 0x66, 0x99, 0xff}, {0xcc, 0x33, 0x33, 0xff}} {
		img := image.NewRGBA(image.Rect(0, 0, 64, 48))
		draw.Draw(img, img.Bounds(), image.NewUniform(c), image.Point{}, draw.Src)
		var p bytes.Buffer
		png.Encode(&p, img)
		add("img", i+1, 14, 0, "image/png", 0, 0)
		add("blob", i+1, base64.StdEncoding.EncodeToString(p.Bytes()))
		add("end", i+1)
		add("sync", start+int64(i)*1000)
	}
	add("sync", start+2000)
	return b
}

// addDesktopRecording stores data as a VNC recording of the fixture's
// resource by user1, as an upload would.
func (f *fixture) addDesktopRecording(session string, data []byte) store.Recording {
	f.t.Helper()
	start := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	rel := storage.Path(session, start, ".guac")
	f.storeRecording(session, rel, data)
	sum := sha256.Sum256(data)
	rec, err := f.store.AddRecording(context.Background(), store.Recording{SessionID: session, User: "user1", Resource: "web", Protocol: "vnc",
		GatewayID: 1, Gateway: "gw-a", ClientAddr: "192.0.2.7", Format: formatGuac, Start: start, End: start.Add(2 * time.Second),
		Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:]), Path: rel}, "")
	if err != nil {
		f.t.Fatal(err)
	}
	return rec
}

// exportStatusOf fetches the JSON status of rec's export.
func (f *fixture) exportStatusOf(c *http.Client, rec store.Recording) exportStatusView {
	f.t.Helper()
	resp := f.do(c, "GET", fmt.Sprintf("/recordings/%d/export", rec.ID), nil, nil)
	defer resp.Body.Close()
	var v exportStatusView
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		f.t.Fatalf("export status: %d %v", resp.StatusCode, err)
	}
	return v
}

// awaitExport polls rec's export, as the page does, until it is no longer
// queued or running.
func (f *fixture) awaitExport(c *http.Client, rec store.Recording) exportStatusView {
	f.t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(60 * time.Second)
	for {
		v := f.exportStatusOf(c, rec)
		if v.State != "queued" && v.State != "running" {
			return v
		}
		select {
		case <-tick.C:
		case <-deadline:
			f.t.Fatalf("the export is still %+v", v)
		}
	}
}

func (f *fixture) requestExport(c *http.Client, rec store.Recording) {
	f.t.Helper()
	resp := f.do(c, "POST", fmt.Sprintf("/recordings/%d/export", rec.ID), nil, nil)
	readBody(resp)
	if want := fmt.Sprintf("/recordings/%d#video-export", rec.ID); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != want {
		f.t.Fatalf("export request: %d to %q, want 303 to %s", resp.StatusCode, resp.Header.Get("Location"), want)
	}
}

func needProgram(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is needed for this test (make deps-test installs the ffmpeg package): %v", name, err)
	}
	return p
}

// TestVideoExport exports a desktop recording with the real ffmpeg, as an
// auditor does on its page: start, progress, the download, and ffprobe
// accepts the file; asking again reuses it; both are audited.
//
// It runs with recordings in the directory and in an S3 bucket: the
// export reads the recording through the store either way.
func TestVideoExport(t *testing.T) {
	export := video.New(video.Config{FFmpeg: needProgram(t, "ffmpeg")}).Export
	for _, be := range recordingBackends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			testVideoExport(t, newFixtureOn(t, be.open, export))
		})
	}
}

func testVideoExport(t *testing.T, f *fixture) {
	auditor := f.client("auditor")
	rec := f.addDesktopRecording("VID1", desktopRecording())
	page := fmt.Sprintf("/recordings/%d", rec.ID)

	body := readBody(f.do(auditor, "GET", page, nil, nil))
	if !strings.Contains(body, fmt.Sprintf(`<form method="post" action="/recordings/%d/export" id="video-start">`, rec.ID)) ||
		!strings.Contains(body, ">Export video</button>") || strings.Contains(body, "needs ffmpeg") {
		t.Fatalf("player page offers no export:\n%s", body[strings.Index(body, "<main"):])
	}
	if v := f.exportStatusOf(auditor, rec); v.State != "none" || v.VideoURL != "" {
		t.Fatalf("status before the export: %+v", v)
	}
	f.requestExport(auditor, rec)
	v := f.awaitExport(auditor, rec)
	if v.State != "done" || v.Percent != 100 || v.Size == 0 || v.VideoURL != fmt.Sprintf("/recordings/%d/video", rec.ID) {
		t.Fatalf("finished export: %+v", v)
	}
	body = readBody(f.do(auditor, "GET", page, nil, nil))
	if !strings.Contains(body, `id="video-download"`) || !strings.Contains(body, "Download video (.mp4, ") ||
		!strings.Contains(body, `<form method="post" action="/recordings/`+fmt.Sprint(rec.ID)+`/export" id="video-start" hidden>`) {
		t.Fatalf("player page after the export:\n%s", body[strings.Index(body, `id="video-export"`):])
	}

	resp := f.do(auditor, "GET", v.VideoURL, nil, nil)
	mp4, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "video/mp4" || int64(len(mp4)) != v.Size ||
		resp.Header.Get("Content-Disposition") != `attachment; filename=keyway-web-user1-20260304T050607Z.mp4` {
		t.Fatalf("download: %d %v, %d bytes", resp.StatusCode, resp.Header, len(mp4))
	}
	if _, shared := f.recordings.(exports.Shared); shared {
		// In the bucket, not on this replica's disk.
		if ents, _ := os.ReadDir(f.exportsDir); len(ents) != 0 {
			t.Errorf("the video stayed in %s: %v", f.exportsDir, ents)
		}
	}
	file := filepath.Join(t.TempDir(), "v.mp4")
	os.WriteFile(file, mp4, 0o600)
	out, err := exec.Command(needProgram(t, "ffprobe"), "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=codec_name,width,height", "-of", "csv=p=0", file).Output()
	if err != nil || strings.TrimSpace(string(out)) != "h264,64,48" {
		t.Fatalf("ffprobe: %q %v", out, err)
	}

	// Asking again reuses the video.
	f.requestExport(auditor, rec)
	if v := f.exportStatusOf(auditor, rec); v.State != "done" {
		t.Fatalf("second request: %+v", v)
	}
	ctx := context.Background()
	evs, _ := f.audit.Search(ctx, store.AuditFilter{Action: audit.ActionRecordingExport, Actor: "auditor1"})
	if len(evs) != 2 || evs[1].Details["export"] != "queued" || evs[0].Details["export"] != "reused" || evs[0].Details["session"] != "VID1" || evs[0].Target != "web" {
		t.Errorf("export events: %+v", evs)
	}
	if evs, _ := f.audit.Search(ctx, store.AuditFilter{Action: audit.ActionRecordingExportDownload, Actor: "auditor1"}); len(evs) != 1 || evs[0].Details["recording"] != fmt.Sprint(rec.ID) {
		t.Errorf("download events: %+v", evs)
	}
	// A terminal recording has no video.
	cast := f.addRecording("VID2", "text")
	if resp := f.do(auditor, "POST", fmt.Sprintf("/recordings/%d/export", cast.ID), nil, nil); resp.StatusCode != 404 ||
		!strings.Contains(readBody(resp), "Only desktop recordings can be exported as video.") {
		t.Errorf("export of a terminal recording: %d", resp.StatusCode)
	}
}

// TestVideoExportFails checks that a failed export says why on the page
// and in the status, and can be asked for again.
func TestVideoExportFails(t *testing.T) {
	dir := t.TempDir()
	broken := filepath.Join(dir, "ffmpeg")
	os.WriteFile(broken, []byte("#!/bin/sh\ncat >/dev/null\necho \"Unknown encoder 'libx264'\" >&2\nexit 1\n"), 0o755)
	for _, tc := range []struct {
		name   string
		ffmpeg string
		rec    []byte
		reason string
	}{
		{"ffmpeg fails", broken, desktopRecording(), "The video encoder ffmpeg failed: Unknown encoder &#39;libx264&#39;."},
		{"a damaged recording", needProgram(t, "ffmpeg"), []byte("4.size,1.0,2.64,x48;"), "The recording is damaged or not a desktop recording: instruction at byte 0"},
		{"a recording without frames", needProgram(t, "ffmpeg"), []byte("4.size,1.0,2.64,2.48;"), "The recording has nothing to show: it holds no frame."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixtureWith(t, video.New(video.Config{FFmpeg: tc.ffmpeg}).Export)
			auditor := f.client("auditor")
			rec := f.addDesktopRecording("BAD1", tc.rec)
			f.requestExport(auditor, rec)
			v := f.awaitExport(auditor, rec)
			if v.State != "failed" || !strings.Contains(strings.ReplaceAll(v.Reason, "'", "&#39;"), tc.reason) {
				t.Fatalf("status %+v, want failed: %s", v, tc.reason)
			}
			body := readBody(f.do(auditor, "GET", fmt.Sprintf("/recordings/%d", rec.ID), nil, nil))
			if !strings.Contains(body, "The last export failed: <span id=\"video-reason\">"+tc.reason) ||
				!strings.Contains(body, `id="video-start">`) {
				t.Fatalf("page after the failure:\n%s", body[strings.Index(body, `id="video-export"`):])
			}
			if resp := f.do(auditor, "GET", fmt.Sprintf("/recordings/%d/video", rec.ID), nil, nil); resp.StatusCode != 404 ||
				!strings.Contains(readBody(resp), "has not been exported as video yet") {
				t.Fatalf("video of a failed export: %d", resp.StatusCode)
			}
			entries, _ := os.ReadDir(f.exportsDir)
			if len(entries) != 0 {
				t.Errorf("a failed export left %v", entries)
			}
		})
	}
}

// TestVideoExportProgress shows a running export's progress on the page
// and in the status.
func TestVideoExportProgress(t *testing.T) {
	release := make(chan struct{})
	halfway := make(chan struct{})
	f := newFixtureWith(t, func(ctx context.Context, _ video.Source, dst string, progress func(float64)) error {
		progress(0.42)
		close(halfway)
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		progress(1)
		return os.WriteFile(dst, []byte("video"), 0o600)
	})
	auditor := f.client("auditor")
	rec := f.addDesktopRecording("PRG1", desktopRecording())
	f.requestExport(auditor, rec)
	<-halfway
	if v := f.exportStatusOf(auditor, rec); v.State != "running" || v.Percent != 42 {
		t.Fatalf("status midway: %+v", v)
	}
	body := readBody(f.do(auditor, "GET", fmt.Sprintf("/recordings/%d", rec.ID), nil, nil))
	if !strings.Contains(body, `<progress id="video-bar" max="100" value="42"`) || !strings.Contains(body, "Exporting the video… 42%") ||
		!strings.Contains(body, `data-state="running"`) || !strings.Contains(body, `id="video-start" hidden>`) {
		t.Fatalf("page midway:\n%s", body[strings.Index(body, `id="video-export"`):])
	}
	close(release)
	if v := f.awaitExport(auditor, rec); v.State != "done" {
		t.Fatalf("status at the end: %+v", v)
	}
}

// TestVideoExportWithoutFFmpeg: the page says what export needs, and
// offers no button.
func TestVideoExportWithoutFFmpeg(t *testing.T) {
	f := newFixtureWith(t, nil)
	auditor := f.client("auditor")
	rec := f.addDesktopRecording("NOF1", desktopRecording())
	body := readBody(f.do(auditor, "GET", fmt.Sprintf("/recordings/%d", rec.ID), nil, nil))
	if !strings.Contains(body, "Video export needs ffmpeg installed on the portal.") || strings.Contains(body, "Export video") {
		t.Fatalf("page without ffmpeg:\n%s", body[strings.Index(body, `id="video-export"`):])
	}
	if resp := f.do(auditor, "POST", fmt.Sprintf("/recordings/%d/export", rec.ID), nil, nil); resp.StatusCode != http.StatusNotImplemented ||
		!strings.Contains(readBody(resp), "Video export needs ffmpeg installed on the portal.") {
		t.Fatalf("export without ffmpeg: %d", resp.StatusCode)
	}
}
