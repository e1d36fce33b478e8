package exports

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/e2e/targets"
	"github.com/keyway-dev/keyway/portal/objstore"
	"github.com/keyway-dev/keyway/portal/store"
	"github.com/keyway-dev/keyway/recordings/storage"
	"github.com/keyway-dev/keyway/recordings/video"
)

// fake is an export the test drives: it reports half done, then waits for
// the test to say how it ends.
type fake struct {
	started chan store.Recording
	finish  chan error
}

func (f *fake) export(ctx context.Context, src video.Source, dst string, progress func(float64)) error {
	progress(0.5)
	b := make([]byte, src.Size)
	src.Data.ReadAt(b, 0)
	f.started <- store.Recording{SHA256: fmt.Sprintf("%x", sha256.Sum256(b))}
	select {
	case err := <-f.finish:
		if err != nil {
			return err
		}
		return os.WriteFile(dst, []byte("video of "+string(b)), 0o600)
	case <-ctx.Done():
		return ctx.Err()
	}
}

type fixture struct {
	t    *testing.T
	r    *Runner
	fake *fake
	recs *storage.Dir
	dir  string
	n    int
}

func newFixture(t *testing.T, maxBytes int64) *fixture {
	t.Helper()
	dir := t.TempDir()
	recs, err := storage.Open(filepath.Join(dir, "recordings"))
	if err != nil {
		t.Fatal(err)
	}
	fk := &fake{started: make(chan store.Recording, 1), finish: make(chan error)}
	f := &fixture{t: t, fake: fk, recs: recs, dir: filepath.Join(dir, "exports")}
	// Leftovers of an export a crash stopped go at start.
	os.MkdirAll(f.dir, 0o700)
	os.WriteFile(filepath.Join(f.dir, ".export-1.mp4.tmp"), []byte("half"), 0o600)
	f.r, err = New(Config{Dir: f.dir, Recordings: recs, Export: fk.export, MaxBytes: maxBytes, MaxQueue: 2})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return f
}

// recording stores a desktop recording.
func (f *fixture) recording() store.Recording {
	f.n++
	data := []byte(fmt.Sprintf("recording %d", f.n))
	sum := sha256.Sum256(data)
	rel := filepath.Join("2026", fmt.Sprintf("S%d.guac", f.n))
	os.MkdirAll(filepath.Join(f.recs.Root(), "2026"), 0o700)
	if err := os.WriteFile(filepath.Join(f.recs.Root(), rel), data, 0o600); err != nil {
		f.t.Fatal(err)
	}
	return store.Recording{ID: int64(f.n), SessionID: fmt.Sprintf("S%d", f.n), Format: "guac", Path: rel, Size: int64(len(data)),
		SHA256: hex.EncodeToString(sum[:])}
}

// started waits for the export of rec to start.
func (f *fixture) started(rec store.Recording) {
	f.t.Helper()
	select {
	case got := <-f.fake.started:
		if got.SHA256 != rec.SHA256 {
			f.t.Fatalf("the export of %s started, want %s", got.SHA256, rec.SHA256)
		}
	case <-time.After(10 * time.Second):
		f.t.Fatal("the export did not start")
	}
}

// await waits until rec's export is in state s.
func (f *fixture) await(rec store.Recording, s State) Job {
	f.t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for {
		j := f.r.Status(rec)
		if j.State == s {
			return j
		}
		select {
		case <-tick.C:
		case <-deadline:
			f.t.Fatalf("export of recording %d is %+v, want %s", rec.ID, j, s)
		}
	}
}

func TestLifecycle(t *testing.T) {
	f := newFixture(t, 0)
	if _, err := os.Stat(filepath.Join(f.dir, ".export-1.mp4.tmp")); err == nil {
		t.Error("a crashed export's leftover was kept")
	}
	a, b, c, d := f.recording(), f.recording(), f.recording(), f.recording()
	if j := f.r.Status(a); j.State != "" {
		t.Fatalf("status before any request: %+v", j)
	}
	if j, err := f.r.Request(a); err != nil || j.State != Queued {
		t.Fatalf("request: %+v %v", j, err)
	}
	f.started(a)
	if j := f.await(a, Running); j.Progress != 0.5 {
		t.Errorf("running at %v, want the progress reported (0.5)", j.Progress)
	}
	// While a runs, b and c wait; the queue holds two.
	for _, r := range []store.Recording{b, c} {
		if j, err := f.r.Request(r); err != nil || j.State != Queued {
			t.Fatalf("request: %+v %v", j, err)
		}
	}
	if _, err := f.r.Request(d); !errors.Is(err, ErrQueueFull) || !strings.Contains(err.Error(), "try again once one is done") {
		t.Fatalf("a third waiting export: %v", err)
	}
	// Asking again for one under way joins it.
	if j, err := f.r.Request(b); err != nil || j.State != Queued {
		t.Fatalf("second request: %+v %v", j, err)
	}

	f.fake.finish <- nil
	if j := f.await(a, Done); j.Size == 0 {
		t.Errorf("done without a size: %+v", j)
	}
	// b fails with ffmpeg's words.
	f.started(b)
	f.fake.finish <- fmt.Errorf("%w: Unknown encoder 'libx264'", video.ErrFFmpeg)
	if j := f.await(b, Failed); j.Reason != "The video encoder ffmpeg failed: Unknown encoder 'libx264'." {
		t.Errorf("failure reason %q", j.Reason)
	}
	// c is removed (its recording deleted) while it runs: the export
	// stops and leaves nothing.
	f.started(c)
	if err := f.r.Remove(c); err != nil {
		t.Fatal(err)
	}
	// A new export of b after its failure.
	if j, err := f.r.Request(b); err != nil || j.State != Queued {
		t.Fatalf("request after failure: %+v %v", j, err)
	}
	f.started(b)
	f.fake.finish <- nil
	f.await(b, Done)
	if j := f.r.Status(c); j.State != "" {
		t.Errorf("removed export: %+v", j)
	}
	// Asking for a done one reuses the video: no export starts.
	if j, err := f.r.Request(a); err != nil || j.State != Done {
		t.Fatalf("request of a done export: %+v %v", j, err)
	}
	select {
	case <-f.fake.started:
		t.Fatal("a done export ran again")
	default:
	}
	file, err := f.r.Open(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(file)
	file.Close()
	if string(body) != "video of recording 1" {
		t.Fatalf("video %q", body)
	}
	// Retention deletes a's recording: the video goes with it.
	if err := f.r.Remove(a); err != nil {
		t.Fatal(err)
	}
	if j := f.r.Status(a); j.State != "" {
		t.Errorf("status after removal: %+v", j)
	}
	ents, _ := os.ReadDir(f.dir)
	if len(ents) != 1 || ents[0].Name() != b.SHA256+".mp4" {
		t.Errorf("exports directory holds %v, want b's video only", ents)
	}
	if _, err := f.r.Request(store.Recording{Format: "asciicast", SHA256: a.SHA256}); !errors.Is(err, ErrNotDesktop) {
		t.Errorf("terminal recording: %v", err)
	}
}

// TestBound checks that past MaxBytes the least recently used videos go.
func TestBound(t *testing.T) {
	// Each video is 20 bytes: two fit.
	f := newFixture(t, 45)
	var recs []store.Recording
	for i := range 3 {
		r := f.recording()
		recs = append(recs, r)
		f.r.Request(r)
		f.started(r)
		f.fake.finish <- nil
		f.await(r, Done)
		if i == 1 {
			// The first is downloaded: now the second is the oldest used.
			old := time.Now().Add(-time.Hour)
			os.Chtimes(filepath.Join(f.dir, recs[0].SHA256+".mp4"), old, old)
			os.Chtimes(filepath.Join(f.dir, recs[1].SHA256+".mp4"), old.Add(-time.Hour), old.Add(-time.Hour))
			file, err := f.r.Open(context.Background(), recs[0])
			if err != nil {
				t.Fatal(err)
			}
			file.Close()
		}
	}
	for i, want := range []State{Done, "", Done} {
		if j := f.r.Status(recs[i]); j.State != want {
			t.Errorf("video %d: %+v, want %q", i, j, want)
		}
	}
}

func TestReasons(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{context.Canceled, "The portal stopped during the export. Export it again."},
		{fmt.Errorf("open the recording: %w", os.ErrNotExist), "The recording's file is missing from the portal's recording storage."},
		{fmt.Errorf("%w: it holds no frame", video.ErrEmpty), "The recording has nothing to show: it holds no frame."},
		{errors.New("create the video file: disk full"), "The export failed: create the video file: disk full."},
	} {
		if got := reason(tc.err); got != tc.want {
			t.Errorf("reason(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

// TestSharedVideos runs two runners, as two portal replicas, on one S3
// bucket (a real versitygw on loopback) holding the recordings and the
// videos: a video made on replica A is done and downloadable on replica
// B; neither keeps a copy in its directory (one would outlive its
// recording when retention runs on the other); retention's Remove on B
// deletes it for both.
func TestSharedVideos(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := targets.NewS3(t)
	bucket, err := objstore.New(ctx, objstore.Config{Bucket: srv.Bucket, Prefix: "p", Endpoint: srv.Endpoint, Region: srv.Region,
		PathStyle: true, Credentials: srv.Credentials()})
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("a desktop recording")
	sum := sha256.Sum256(data)
	rel := storage.Path("SH1", time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC), ".guac")
	unlock, _ := bucket.Lock("SH1")
	if _, err := bucket.Append(ctx, "SH1", rel, 0, strings.NewReader(string(data)), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if _, err := bucket.Commit(ctx, "SH1", rel, int64(len(data)), hex.EncodeToString(sum[:])); err != nil {
		t.Fatal(err)
	}
	unlock()
	rec := store.Recording{ID: 1, SessionID: "SH1", Format: "guac", Path: rel, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}

	replica := func() (*Runner, *fake, string) {
		dir := t.TempDir()
		fk := &fake{started: make(chan store.Recording, 1), finish: make(chan error)}
		r, err := New(Config{Dir: dir, Recordings: bucket, Shared: bucket, Export: fk.export})
		if err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); r.Run(rctx) }()
		t.Cleanup(func() { cancel(); <-done })
		return r, fk, dir
	}
	a, fa, dirA := replica()
	b, _, dirB := replica()
	if j := b.Status(rec); j.State != "" {
		t.Fatalf("B before any export: %+v", j)
	}
	if _, err := a.Request(rec); err != nil {
		t.Fatal(err)
	}
	<-fa.started // the export read the recording from the bucket
	fa.finish <- nil
	fb := &fixture{t: t, r: a}
	fb.await(rec, Done)
	want := "video of " + string(data)
	j := b.Status(rec)
	if j.State != Done || j.Size != int64(len(want)) {
		t.Fatalf("B sees %+v, want done with %d bytes", j, len(want))
	}
	for _, d := range []string{dirA, dirB} {
		if ents, _ := os.ReadDir(d); len(ents) != 0 {
			t.Fatalf("a replica's directory holds %v", ents)
		}
	}
	f, err := b.Open(ctx, rec)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(f)
	f.Close()
	if err != nil || string(got) != want {
		t.Fatalf("B downloads %q, %v", got, err)
	}
	if keys, _ := srv.Keys(ctx, "p/exports/"); len(keys) != 1 || keys[0] != "p/exports/"+rec.SHA256+".mp4" {
		t.Fatalf("bucket exports: %v", keys)
	}
	if err := b.Remove(rec); err != nil {
		t.Fatal(err)
	}
	if keys, _ := srv.Keys(ctx, "p/exports/"); len(keys) != 0 {
		t.Fatalf("left in the bucket after Remove: %v", keys)
	}
	if j := a.Status(rec); j.State != "" {
		t.Fatalf("A after the removal: %+v", j)
	}
	if _, err := b.Open(ctx, rec); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("B opens a removed video: %v", err)
	}
}
