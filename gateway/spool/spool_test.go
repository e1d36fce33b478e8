package spool

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/keyway-dev/keyway/gateway/guac"
	"github.com/keyway-dev/keyway/recordings/asciicast"
	"github.com/keyway-dev/keyway/recordings/guacrec"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var epoch = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

// clock is a settable test clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// testSpool is a spool whose flusher ticks only when the test sends on
// tick; flushed receives after each background flush.
type testSpool struct {
	*Spool
	tick    chan time.Time
	flushed chan struct{}
	clock   *clock
}

func newSpool(t *testing.T, dir string) *testSpool {
	t.Helper()
	ts := &testSpool{tick: make(chan time.Time), flushed: make(chan struct{}, 16), clock: &clock{epoch}}
	s, err := open(Config{Dir: dir, Now: ts.clock.now}, ts.tick, func() { ts.flushed <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	ts.Spool = s
	t.Cleanup(func() { s.Close() })
	return ts
}

// kill stops s as a crash would: the flusher stops, files are closed, and
// what the recordings buffered is lost.
func kill(s *Spool) {
	s.mu.Lock()
	s.closed = true
	recs := s.openRecordings()
	s.open = map[string]*Recording{}
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	for _, r := range recs {
		r.f.Close()
		if r.index != nil {
			r.index.Close()
		}
	}
}

func meta(id string, f Format) Meta {
	return Meta{SessionID: id, User: "alice", Resource: "db-1", Protocol: "ssh", Gateway: "gw-office1", ClientAddr: "192.0.2.7", Format: f}
}

// same compares metadata, times by the instant.
func same(a, b Meta) bool {
	if !a.Start.Equal(b.Start) || !a.End.Equal(b.End) {
		return false
	}
	a.Start, a.End = b.Start, b.End
	return a == b
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRecordAndFinish(t *testing.T) {
	dir := t.TempDir()
	s := newSpool(t, dir)
	rec, err := s.Create(meta("S1", Asciicast))
	if err != nil {
		t.Fatal(err)
	}
	w, err := asciicast.NewWriter(rec, asciicast.Config{Header: asciicast.Header{Width: 80, Height: 24}})
	if err != nil {
		t.Fatal(err)
	}
	w.Output([]byte("hello\r\n"))
	w.Resize(100, 30)
	s.clock.t = epoch.Add(90 * time.Second)
	m, err := rec.Finish()
	if err != nil {
		t.Fatal(err)
	}
	data := readFile(t, filepath.Join(dir, "S1.cast"))
	if !m.Complete || !m.Start.Equal(epoch) || !m.End.Equal(epoch.Add(90*time.Second)) || m.Size != int64(len(data)) || m.SHA256 != sha(data) {
		t.Errorf("finished as %+v; file of %d bytes, %s", m, len(data), sha(data))
	}
	if m.User != "alice" || m.Resource != "db-1" || m.Protocol != "ssh" || m.Gateway != "gw-office1" || m.ClientAddr != "192.0.2.7" {
		t.Errorf("session fields lost: %+v", m)
	}
	list, err := s.List()
	if err != nil || len(list) != 1 || !same(list[0], m) {
		t.Errorf("listed %+v, %v; want %+v", list, err, m)
	}
	select {
	case <-s.Finished():
	default:
		t.Error("finishing did not signal")
	}
	if _, err := rec.Write([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Errorf("write after finish: %v", err)
	}
	if _, err := rec.Finish(); !errors.Is(err, ErrClosed) {
		t.Errorf("second finish: %v", err)
	}
	if !strings.Contains(string(readFile(t, filepath.Join(dir, "S1.json"))), `"version": 1`) {
		t.Error("metadata file has no version")
	}
}

func TestBackgroundFlush(t *testing.T) {
	dir := t.TempDir()
	s := newSpool(t, dir)
	rec, err := s.Create(meta("S1", Asciicast))
	if err != nil {
		t.Fatal(err)
	}
	rec.Write([]byte("buffered"))
	path := filepath.Join(dir, "S1.cast")
	if b := readFile(t, path); len(b) != 0 {
		t.Fatalf("written before the flush: %q", b)
	}
	s.tick <- time.Now()
	<-s.flushed
	if b := readFile(t, path); string(b) != "buffered" {
		t.Fatalf("after the flush: %q", b)
	}
}

func TestCreateRefuses(t *testing.T) {
	dir := t.TempDir()
	s := newSpool(t, dir)
	for _, m := range []Meta{meta("", Asciicast), meta("../x", Asciicast), meta("a.b", Asciicast), meta(strings.Repeat("a", maxID+1), Asciicast), meta("S1", "mp4")} {
		if _, err := s.Create(m); err == nil {
			t.Errorf("created %q as %q", m.SessionID, m.Format)
		}
	}
	if _, err := s.Create(meta("S1", Asciicast)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(meta("S1", Guacamole)); err == nil {
		t.Error("created an open recording's ID again")
	}
	// A recording of an earlier run, not yet uploaded.
	os.WriteFile(filepath.Join(dir, "S2.cast"), []byte("x"), 0o600)
	if _, err := s.Create(meta("S2", Asciicast)); err == nil {
		t.Error("overwrote a recording waiting for upload")
	}
	s.Close()
	if _, err := s.Create(meta("S3", Asciicast)); !errors.Is(err, ErrClosed) {
		t.Errorf("create after close: %v", err)
	}
}

func TestRecoverTerminalAfterCrash(t *testing.T) {
	dir := t.TempDir()
	s := newSpool(t, dir)
	rec, err := s.Create(meta("S1", Asciicast))
	if err != nil {
		t.Fatal(err)
	}
	w, _ := asciicast.NewWriter(rec, asciicast.Config{Header: asciicast.Header{Width: 80, Height: 24}})
	w.Output([]byte("kept\r\n"))
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	kept := readFile(t, filepath.Join(dir, "S1.cast"))
	w.Output([]byte("lost in the buffer"))
	// The crash tore the last write.
	f, _ := os.OpenFile(filepath.Join(dir, "S1.cast"), os.O_WRONLY|os.O_APPEND, 0)
	f.Write([]byte(`[1.5, "o", "tor`))
	f.Close()
	mtime := epoch.Add(time.Minute)
	os.Chtimes(filepath.Join(dir, "S1.cast"), mtime, mtime)
	kill(s.Spool)

	s2 := newSpool(t, dir)
	got, err := s2.Recover()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("recovered %+v", got)
	}
	m := got[0]
	data := readFile(t, filepath.Join(dir, "S1.cast"))
	if !bytes.Equal(data, kept) {
		t.Errorf("recovered file %q, want %q", data, kept)
	}
	if m.Complete || !m.End.Equal(mtime) || m.Size != int64(len(kept)) || m.SHA256 != sha(kept) || m.User != "alice" {
		t.Errorf("recovered as %+v", m)
	}
	rd, err := asciicast.NewReader(bytes.NewReader(data), asciicast.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if err := asciicast.Text(rd, io.Discard); err != nil {
		t.Errorf("recovered recording: %v", err)
	}
	// Recovered once only; the metadata on disk says so.
	if again, err := s2.Recover(); err != nil || len(again) != 0 {
		t.Errorf("second recovery: %+v, %v", again, err)
	}
	if list, _ := s2.List(); len(list) != 1 || !same(list[0], m) {
		t.Errorf("listed %+v", list)
	}
}

func TestRecoverDesktopAfterCrash(t *testing.T) {
	dir := t.TempDir()
	s := newSpool(t, dir)
	rec, err := s.Create(meta("D1", Guacamole))
	if err != nil {
		t.Fatal(err)
	}
	w, err := guacrec.NewWriter(rec, rec.Index())
	if err != nil {
		t.Fatal(err)
	}
	frame := func(ts string) []byte {
		var b []byte
		b = guac.New("size", "0", "1024", "768").AppendTo(b)
		b = guac.New("rect", "0", "0", "0", "1024", "768").AppendTo(b)
		return guac.New("sync", ts).AppendTo(b)
	}
	w.KeyFrame()
	w.Write(frame("1000"))
	w.Write(frame("2000"))
	w.KeyFrame()
	w.Write(frame("3000"))
	w.Flush()
	kept := readFile(t, filepath.Join(dir, "D1.guac"))
	// A key frame whose bytes stayed in the buffer is in the index, which
	// is written at once: recovery must drop it.
	w.KeyFrame()
	w.Write(frame("4000"))
	f, _ := os.OpenFile(filepath.Join(dir, "D1.guac"), os.O_WRONLY|os.O_APPEND, 0)
	f.Write([]byte("4.size,1.0,4.10"))
	f.Close()
	kill(s.Spool)

	s2 := newSpool(t, dir)
	got, err := s2.Recover()
	if err != nil || len(got) != 1 {
		t.Fatalf("recovered %+v, %v", got, err)
	}
	data := readFile(t, filepath.Join(dir, "D1.guac"))
	if !bytes.Equal(data, kept) || got[0].Size != int64(len(kept)) || got[0].SHA256 != sha(kept) || got[0].Complete {
		t.Errorf("recovered %+v, %d bytes; want %d", got[0], len(data), len(kept))
	}
	ix, err := guacrec.ReadIndex(bytes.NewReader(readFile(t, filepath.Join(dir, "D1.idx"))))
	if err != nil {
		t.Fatal(err)
	}
	want := guacrec.Index{{Offset: 0, Timestamp: 1000}, {Offset: int64(2 * len(frame("1000"))), Timestamp: 3000}}
	if len(ix) != 2 || ix[0] != want[0] || ix[1] != want[1] {
		t.Errorf("index %+v, want %+v", ix, want)
	}
}

func TestRecoverEdgeCases(t *testing.T) {
	dir := t.TempDir()
	s := newSpool(t, dir)
	const header = `{"version":2,"width":80,"height":24}` + "\n"
	event := `[0.5, "o", "a"]` + "\n"
	for _, id := range []string{"Zeros", "Garbage", "Header", "Missing", "Done", "Gone"} {
		if _, err := s.Create(meta(id, Asciicast)); err != nil {
			t.Fatal(err)
		}
	}
	kill(s.Spool)
	write := func(id, data string) { os.WriteFile(filepath.Join(dir, id+".cast"), []byte(data), 0o600) }
	// A power loss left unwritten blocks as zeros.
	write("Zeros", header+event+strings.Repeat("\x00", 4096))
	// Malformed in the middle: evidence, kept as it is.
	write("Garbage", header+"not json\n"+event)
	write("Header", `{"version":2,"wi`)
	os.Remove(filepath.Join(dir, "Missing.cast"))
	// Finished before the crash: left alone.
	s2 := newSpool(t, dir)
	done := meta("Done", Asciicast)
	done.Start, done.End, done.Complete, done.Size, done.SHA256 = epoch, epoch, true, 2, sha([]byte("ok"))
	write("Done", "ok")
	s2.writeMeta(done)
	// Uploaded, but the crash came before the files were deleted.
	gone := meta("Gone", Asciicast)
	gone.Start, gone.End, gone.Uploaded = epoch, epoch, true
	s2.writeMeta(gone)
	// Leftovers: a temporary file, an empty and a non-empty orphan.
	os.WriteFile(filepath.Join(dir, "X.json.tmp"), []byte("{"), 0o600)
	os.WriteFile(filepath.Join(dir, "Empty.guac"), nil, 0o600)
	os.WriteFile(filepath.Join(dir, "Orphan.cast"), []byte("data"), 0o600)

	got, err := s2.Recover()
	if err != nil {
		t.Fatal(err)
	}
	sizes := map[string]int64{}
	for _, m := range got {
		sizes[m.SessionID] = m.Size
		if m.Complete || !m.Finished() {
			t.Errorf("%s recovered as %+v", m.SessionID, m)
		}
	}
	want := map[string]int64{
		"Zeros":   int64(len(header + event)),
		"Garbage": int64(len(header + "not json\n" + event)),
		"Header":  0,
		"Missing": 0,
	}
	if len(sizes) != len(want) {
		t.Errorf("recovered %v, want %v", sizes, want)
	}
	for id, size := range want {
		if sizes[id] != size {
			t.Errorf("%s recovered with %d bytes, want %d", id, sizes[id], size)
		}
	}
	for name, exists := range map[string]bool{
		"Done.cast": true, "Gone.cast": false, "Gone.json": false, "X.json.tmp": false,
		"Empty.guac": false, "Orphan.cast": true, "Missing.cast": true,
	} {
		if _, err := os.Stat(filepath.Join(dir, name)); (err == nil) != exists {
			t.Errorf("%s: exists %v, want %v", name, err == nil, exists)
		}
	}
}

// TestFinishAfterWriteError makes the recording's file fail, as a full
// disk would.
func TestFinishAfterWriteError(t *testing.T) {
	dir := t.TempDir()
	s := newSpool(t, dir)
	rec, err := s.Create(meta("S1", Asciicast))
	if err != nil {
		t.Fatal(err)
	}
	w, _ := asciicast.NewWriter(rec, asciicast.Config{Header: asciicast.Header{Width: 80, Height: 24}})
	w.Output([]byte("kept\r\n"))
	w.Flush()
	kept := readFile(t, filepath.Join(dir, "S1.cast"))
	rec.f.Close() // the next write(2) fails
	if err := w.Output(bytes.Repeat([]byte("x"), 2*bufferSize)); err == nil {
		t.Fatal("write to a failed file succeeded")
	}
	// The spool's flusher logs the failure; the recording stays failed.
	s.tick <- time.Now()
	<-s.flushed
	m, err := rec.Finish()
	if err == nil {
		t.Error("finish hid the write error")
	}
	if m.Complete || !m.Finished() || m.Size != int64(len(kept)) || m.SHA256 != sha(kept) {
		t.Errorf("finished as %+v, want %d bytes", m, len(kept))
	}
	if list, _ := s.List(); len(list) != 1 || !same(list[0], m) {
		t.Errorf("listed %+v", list)
	}
}

func TestCloseLeavesOpenRecordingsForRecover(t *testing.T) {
	dir := t.TempDir()
	s := newSpool(t, dir)
	rec, _ := s.Create(meta("S1", Asciicast))
	w, _ := asciicast.NewWriter(rec, asciicast.Config{Header: asciicast.Header{Width: 80, Height: 24}})
	w.Output([]byte("buffered"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	data := readFile(t, filepath.Join(dir, "S1.cast"))
	if !bytes.Contains(data, []byte("buffered")) {
		t.Errorf("close did not flush: %q", data)
	}
	if err := w.Output([]byte("late")); !errors.Is(err, ErrClosed) {
		t.Errorf("write after close: %v", err)
	}
	s2 := newSpool(t, dir)
	if got, err := s2.Recover(); err != nil || len(got) != 1 || got[0].Size != int64(len(data)) {
		t.Errorf("recovered %+v, %v", got, err)
	}
}

func TestCheckSpace(t *testing.T) {
	s := newSpool(t, t.TempDir())
	s.statfs = func(string) (uint64, error) { return 1000, nil }
	for _, tc := range []struct {
		min uint64
		low bool
	}{{0, false}, {999, false}, {1000, false}, {1001, true}, {math.MaxUint64, true}} {
		s.minFree = tc.min
		if err := s.CheckSpace(); errors.Is(err, ErrLowSpace) != tc.low || (err != nil && !tc.low) {
			t.Errorf("1000 bytes free, %d required: %v", tc.min, err)
		}
	}
	s.statfs = func(string) (uint64, error) { return 0, errors.New("no such file system") }
	if err := s.CheckSpace(); err == nil || errors.Is(err, ErrLowSpace) {
		t.Errorf("statfs failure: %v", err)
	}
	// The real file system has a byte free, and not 2^64-1.
	s.statfs = freeBytes
	s.minFree = 1
	if err := s.CheckSpace(); err != nil {
		t.Errorf("one byte: %v", err)
	}
	s.minFree = math.MaxUint64
	if err := s.CheckSpace(); !errors.Is(err, ErrLowSpace) {
		t.Errorf("all bytes: %v", err)
	}
}

// TestPending checks the count and bytes of recordings waiting for
// upload, which the gateway exports as metrics: an open recording counts
// with what it flushed, a finished one with its size.
func TestPending(t *testing.T) {
	t.Parallel()
	s := newSpool(t, t.TempDir())
	if n, b, err := s.Pending(); n != 0 || b != 0 || err != nil {
		t.Fatalf("empty spool: %d recordings, %d bytes, %v", n, b, err)
	}
	a, err := s.Create(meta("P1", Asciicast))
	if err != nil {
		t.Fatal(err)
	}
	a.Write([]byte("0123456789"))
	if _, err := a.Finish(); err != nil {
		t.Fatal(err)
	}
	open, err := s.Create(meta("P2", Asciicast))
	if err != nil {
		t.Fatal(err)
	}
	open.Write([]byte("abcde"))
	if err := open.Flush(); err != nil {
		t.Fatal(err)
	}
	n, b, err := s.Pending()
	if n != 2 || err != nil {
		t.Fatalf("%d recordings pending (%v), want 2", n, err)
	}
	// Headers are written too: at least what the test wrote.
	if b < 15 {
		t.Errorf("%d bytes pending, want at least 15", b)
	}
}
