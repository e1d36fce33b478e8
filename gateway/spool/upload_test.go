package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/gateway/guac"
	"github.com/keyway-dev/keyway/recordings/guacrec"
)

// fakeSink is the portal's side of uploads, in memory. Its knobs make it
// unreachable, cut an upload short, or report a wrong checksum.
type fakeSink struct {
	mu       sync.Mutex
	stored   map[string][]byte
	indexes  map[string][]byte
	offsets  []int64 // of each Upload call
	down     int     // calls that fail as if the portal were unreachable
	cutAfter int     // if > 0, the next upload stores this many bytes, then fails
	wrongSHA bool
	done     chan string // receives each confirmed recording's ID
}

func newSink() *fakeSink {
	return &fakeSink{stored: map[string][]byte{}, indexes: map[string][]byte{}, done: make(chan string, 16)}
}

var errDown = errors.New("connect: connection refused")

func (k *fakeSink) Status(ctx context.Context, id string) (int64, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.down > 0 {
		k.down--
		return 0, errDown
	}
	return int64(len(k.stored[id])), nil
}

func (k *fakeSink) Upload(ctx context.Context, u Upload) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.down > 0 {
		k.down--
		return "", errDown
	}
	id := u.Meta.SessionID
	k.offsets = append(k.offsets, u.Offset)
	if u.Offset > int64(len(k.stored[id])) {
		return "", fmt.Errorf("upload at %d, have %d", u.Offset, len(k.stored[id]))
	}
	data, err := io.ReadAll(u.Data)
	if err != nil {
		return "", err
	}
	k.stored[id] = append(k.stored[id][:u.Offset], data...)
	if k.cutAfter > 0 {
		k.stored[id] = k.stored[id][:min(int(u.Offset)+k.cutAfter, len(k.stored[id]))]
		k.cutAfter = 0
		return "", errors.New("connection reset")
	}
	k.indexes[id] = u.Index
	sum := sha(k.stored[id])
	if k.wrongSHA {
		sum = sha([]byte("something else"))
	} else {
		k.done <- id
	}
	return sum, nil
}

// finish records data as a finished recording of session id.
func finish(t *testing.T, s *Spool, id string, data []byte) Meta {
	t.Helper()
	rec, err := s.Create(meta(id, Asciicast))
	if err != nil {
		t.Fatal(err)
	}
	rec.Write(data)
	m, err := rec.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func exists(dir, name string) bool {
	_, err := os.Stat(filepath.Join(dir, name))
	return err == nil
}

// fakeAfter sends each wait asked for on waits; the first fire waits end
// at once, the others never.
type fakeAfter struct {
	waits chan time.Duration
	fire  int
}

func (f *fakeAfter) after(d time.Duration) <-chan time.Time {
	f.waits <- d
	if f.fire == 0 {
		return nil
	}
	f.fire--
	c := make(chan time.Time, 1)
	c <- time.Time{}
	return c
}

func TestUploadRetriesWhilePortalIsDown(t *testing.T) {
	dir := t.TempDir()
	s := newSpool(t, dir)
	data := bytes.Repeat([]byte("recording "), 1000)
	finish(t, s.Spool, "S1", data)

	sink := newSink()
	sink.down = 4
	u := NewUploader(s.Spool, sink, UploaderConfig{MinBackoff: time.Second, MaxBackoff: 3 * time.Second, Rescan: time.Hour})
	fa := &fakeAfter{waits: make(chan time.Duration, 16), fire: 4}
	u.after = fa.after
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		u.Run(ctx)
	}()
	// Four failed passes, each followed by a backoff, then the upload and
	// the wait for the next rescan. Backoff doubles up to the maximum, less
	// up to a quarter of jitter.
	want := []time.Duration{time.Second, 2 * time.Second, 3 * time.Second, 3 * time.Second, time.Hour}
	var waits []time.Duration
	for range want {
		select {
		case d := <-fa.waits:
			waits = append(waits, d)
		case <-time.After(10 * time.Second):
			t.Fatalf("waits so far %v", waits)
		}
	}
	cancel()
	<-stopped
	for i, w := range want {
		if got := waits[i]; got > w || got < w-w/4-1 {
			t.Errorf("wait %d: %v, want about %v (all: %v)", i, got, w, waits)
		}
	}
	select {
	case <-sink.done:
	default:
		t.Fatal("the recording was never confirmed")
	}
	if !bytes.Equal(sink.stored["S1"], data) {
		t.Errorf("portal stored %d bytes, want %d", len(sink.stored["S1"]), len(data))
	}
	for _, name := range []string{"S1.cast", "S1.json"} {
		if exists(dir, name) {
			t.Errorf("%s still in the spool", name)
		}
	}
}

func TestChecksumMismatchKeepsRecording(t *testing.T) {
	dir := t.TempDir()
	s := newSpool(t, dir)
	data := []byte("the recording")
	finish(t, s.Spool, "S1", data)
	sink := newSink()
	sink.wrongSHA = true
	u := NewUploader(s.Spool, sink, UploaderConfig{})
	if err := u.pass(context.Background()); !errors.Is(err, ErrChecksumMismatch) {
		t.Fatalf("pass: %v", err)
	}
	if !exists(dir, "S1.cast") || !exists(dir, "S1.json") {
		t.Fatal("recording deleted without a confirmed checksum")
	}
	// The portal holds all the bytes, but its copy is not trusted: the
	// next upload starts over.
	sink.wrongSHA = false
	if err := u.pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	if want := []int64{0, 0}; len(sink.offsets) != 2 || sink.offsets[1] != 0 {
		t.Errorf("upload offsets %v, want %v", sink.offsets, want)
	}
	if exists(dir, "S1.cast") || !bytes.Equal(sink.stored["S1"], data) {
		t.Error("recording not uploaded after the mismatch")
	}
}

func TestUploadResumes(t *testing.T) {
	dir := t.TempDir()
	s := newSpool(t, dir)
	data := bytes.Repeat([]byte("0123456789"), 100)
	finish(t, s.Spool, "S1", data)
	sink := newSink()
	sink.cutAfter = 300
	u := NewUploader(s.Spool, sink, UploaderConfig{})
	if err := u.pass(context.Background()); err == nil {
		t.Fatal("cut upload succeeded")
	}
	if !exists(dir, "S1.cast") {
		t.Fatal("recording deleted after a failed upload")
	}
	if err := u.pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(sink.offsets) != 2 || sink.offsets[0] != 0 || sink.offsets[1] != 300 {
		t.Errorf("upload offsets %v, want [0 300]", sink.offsets)
	}
	if !bytes.Equal(sink.stored["S1"], data) || exists(dir, "S1.cast") {
		t.Error("resumed upload did not complete")
	}
}

func TestUploadOrderAndSkips(t *testing.T) {
	dir := t.TempDir()
	s := newSpool(t, dir)
	open, err := s.Create(meta("Open", Asciicast))
	if err != nil {
		t.Fatal(err)
	}
	open.Write([]byte("still recording"))
	s.clock.t = epoch.Add(time.Second)
	finish(t, s.Spool, "A", []byte("a"))
	s.clock.t = epoch.Add(2 * time.Second)
	finish(t, s.Spool, "B", []byte("b"))

	sink := newSink()
	u := NewUploader(s.Spool, sink, UploaderConfig{})
	// A fails once: the pass stops there, and the next one tries A last.
	sink.down = 1
	if err := u.pass(context.Background()); !errors.Is(err, errDown) {
		t.Fatalf("pass: %v", err)
	}
	if err := u.pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	var order []string
	for range 2 {
		order = append(order, <-sink.done)
	}
	if fmt.Sprint(order) != "[B A]" {
		t.Errorf("uploaded %v, want B, then A", order)
	}
	if _, ok := sink.stored["Open"]; ok || !exists(dir, "Open.cast") {
		t.Error("an open recording was uploaded")
	}
}

func TestUploadDesktopIndex(t *testing.T) {
	dir := t.TempDir()
	s := newSpool(t, dir)
	rec, err := s.Create(meta("D1", Guacamole))
	if err != nil {
		t.Fatal(err)
	}
	w, _ := guacrec.NewWriter(rec, rec.Index())
	w.KeyFrame()
	w.Write(guac.New("sync", "1000").AppendTo(nil))
	if _, err := rec.Finish(); err != nil {
		t.Fatal(err)
	}
	index := readFile(t, filepath.Join(dir, "D1.idx"))
	sink := newSink()
	if err := NewUploader(s.Spool, sink, UploaderConfig{}).pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sink.indexes["D1"], index) || exists(dir, "D1.idx") {
		t.Errorf("index sent %q, want %q", sink.indexes["D1"], index)
	}
}
