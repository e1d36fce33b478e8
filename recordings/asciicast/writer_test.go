package asciicast

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// fakeClock returns start, then start plus each of steps in turn (the last
// one repeating).
type fakeClock struct {
	start time.Time
	at    time.Duration
	steps []time.Duration
}

func (c *fakeClock) now() time.Time {
	t := c.start.Add(c.at)
	if len(c.steps) > 0 {
		c.at += c.steps[0]
		if len(c.steps) > 1 {
			c.steps = c.steps[1:]
		}
	}
	return t
}

var epoch = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\n got: %s\nwant: %s", name, got, want)
	}
}

func TestWriterGolden(t *testing.T) {
	var buf bytes.Buffer
	clock := &fakeClock{start: epoch, steps: []time.Duration{
		248848 * time.Microsecond, time.Second + 1234567*time.Nanosecond, 500 * time.Millisecond,
	}}
	w, err := NewWriter(&buf, Config{
		Header: Header{Width: 80, Height: 24, Title: "db-1 <prod>", Env: map[string]string{"TERM": "xterm-256color"},
			Keyway: &Meta{SessionID: "S1", User: "alice", Resource: "db-1", Gateway: "gw-office1"}},
		Input: true,
		Now:   clock.now,
	})
	if err != nil {
		t.Fatal(err)
	}
	steps := []func() error{
		func() error { return w.Output([]byte("\x1b[1;31mHello\x1b[0m \"you\"\r\n")) },
		func() error { return w.Input([]byte("ls\r")) },
		// "é" arrives split across two reads; "✓" split over three.
		func() error { return w.Output([]byte("caf\xc3")) },
		func() error { return w.Output([]byte("\xa9 \xe2")) },
		func() error { return w.Output([]byte("\x9c")) },
		func() error { return w.Output([]byte("\x93\t\\ \x00\x7f")) },
		func() error { return w.Resize(100, 30) },
		// Invalid bytes, one U+FFFD per maximal invalid subsequence.
		func() error { return w.Output([]byte("a\xffb\xe2\x82c\xed\xa0\x80d")) },
		// An incomplete character at the end is written as U+FFFD by Close.
		func() error { return w.Output([]byte("end\xf0\x9f")) },
		w.Close,
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	golden(t, "session.cast", buf.Bytes())
	if err := w.Output([]byte("late")); !errors.Is(err, ErrClosed) {
		t.Errorf("output after close: %v", err)
	}

	rd, err := NewReader(bytes.NewReader(buf.Bytes()), DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	h := rd.Header()
	if h.Version != 2 || h.Width != 80 || h.Height != 24 || h.Timestamp != epoch.Unix() || h.Title != "db-1 <prod>" ||
		h.Env["TERM"] != "xterm-256color" || h.Keyway == nil || *h.Keyway != (Meta{"S1", "alice", "db-1", "gw-office1", true}) {
		t.Errorf("header read back as %+v %+v", h, h.Keyway)
	}
	var out, in strings.Builder
	var resized bool
	for {
		ev, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch ev.Kind {
		case Output:
			out.WriteString(ev.Data)
		case Input:
			in.WriteString(ev.Data)
		case Resize:
			cols, rows, err := ev.Size()
			resized = err == nil && cols == 100 && rows == 30
		}
	}
	wantOut := "\x1b[1;31mHello\x1b[0m \"you\"\r\ncafé ✓\t\\ \x00\x7fa\ufffdb\ufffdc\ufffd\ufffd\ufffddend\ufffd"
	if out.String() != wantOut || in.String() != "ls\r" || !resized {
		t.Errorf("read back output %q, input %q, resized %v", out.String(), in.String(), resized)
	}
	if rd.Offset() != int64(buf.Len()) {
		t.Errorf("offset %d at the end of %d bytes", rd.Offset(), buf.Len())
	}
}

func TestInputOffByDefault(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, Config{Header: Header{Width: 80, Height: 24}, Now: (&fakeClock{start: epoch}).now})
	if err != nil {
		t.Fatal(err)
	}
	w.Input([]byte("secret\r"))
	w.Output([]byte("ok"))
	w.Close()
	want := `{"version":2,"width":80,"height":24,"timestamp":1714564800}` + "\n" + `[0.000000, "o", "ok"]` + "\n"
	if buf.String() != want {
		t.Errorf("got %q, want %q", buf.String(), want)
	}
}

// events writes each chunk as output and returns the output events'
// data.
func writeChunks(t *testing.T, chunks ...string) []string {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, Config{Header: Header{Width: 80, Height: 24}, Now: (&fakeClock{start: epoch}).now})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chunks {
		if err := w.Output([]byte(c)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	rd, err := NewReader(&buf, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		ev, err := rd.Next()
		if err == io.EOF {
			return got
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ev.Data)
	}
}

func TestUTF8Boundaries(t *testing.T) {
	const bad = "\ufffd"
	for _, tc := range []struct {
		name   string
		chunks []string
		want   []string // data of each event
	}{
		{"ascii", []string{"ab", "c"}, []string{"ab", "c"}},
		{"two-byte split", []string{"x\xc3", "\xa9y"}, []string{"x", "éy"}},
		{"four-byte split thrice", []string{"\xf0", "\x9f", "\x98", "\x80!"}, []string{"😀!"}},
		{"split then invalid", []string{"\xe2\x82", "A"}, []string{bad + "A"}},
		{"lone continuation", []string{"\x80\x80"}, []string{bad + bad}},
		{"overlong two-byte", []string{"\xc0\xaf"}, []string{bad + bad}},
		{"overlong three-byte", []string{"\xe0\x80\xaf"}, []string{bad + bad + bad}},
		{"surrogate", []string{"\xed\xa0\x80"}, []string{bad + bad + bad}},
		{"above U+10FFFF", []string{"\xf4\x90\x80\x80"}, []string{bad + bad + bad + bad}},
		{"F0 with bad second byte", []string{"\xf0\x80\x80"}, []string{bad + bad + bad}},
		{"truncated three-byte mid-stream", []string{"\xe2\x82 ok"}, []string{bad + " ok"}},
		{"incomplete at the end", []string{"ok\xe2\x82"}, []string{"ok", bad}},
		{"only an incomplete char", []string{"\xe2", "\x9c", "\x93"}, []string{"✓"}},
		{"ff and fe", []string{"\xff\xfe"}, []string{bad + bad}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := writeChunks(t, tc.chunks...)
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("events %q, want %q", got, tc.want)
			}
		})
	}
}

func TestLargeOutputSplitsOnCharacters(t *testing.T) {
	// Three-byte characters, so that the event size limit falls inside
	// one, with an ASCII prefix to shift the boundaries.
	for shift := range 3 {
		in := strings.Repeat("x", shift) + strings.Repeat("✓", maxEventData)
		got := writeChunks(t, in)
		if len(got) < 3 {
			t.Fatalf("shift %d: %d events", shift, len(got))
		}
		for i, d := range got {
			if len(d) > maxEventData || !utf8.ValidString(d) || strings.ContainsRune(d, utf8.RuneError) {
				t.Fatalf("shift %d: event %d of %d bytes, valid %v", shift, i, len(d), utf8.ValidString(d))
			}
		}
		if strings.Join(got, "") != in {
			t.Fatalf("shift %d: events do not join to the output", shift)
		}
	}
}

func TestTimes(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0.000000"},
		{time.Microsecond, "0.000001"},
		{999999 * time.Microsecond, "0.999999"},
		{time.Second, "1.000000"},
		{3723*time.Second + 5*time.Microsecond, "3723.000005"},
	} {
		if got := string(appendTime(nil, tc.d)); got != tc.want {
			t.Errorf("%v as %s, want %s", tc.d, got, tc.want)
		}
	}

	// Times are truncated to microseconds and never go back, even when the
	// clock does.
	var buf bytes.Buffer
	clock := &fakeClock{start: epoch, steps: []time.Duration{0, 2*time.Second + 999, -time.Second, 0}}
	w, _ := NewWriter(&buf, Config{Header: Header{Width: 80, Height: 24}, Now: clock.now})
	w.Output([]byte("a"))
	w.Output([]byte("b"))
	w.Output([]byte("c"))
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")[1:]
	want := []string{`[0.000000, "o", "a"]`, `[2.000000, "o", "b"]`, `[2.000000, "o", "c"]`}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("events\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

func TestWriterRefuses(t *testing.T) {
	for _, h := range []Header{{Width: 0, Height: 24}, {Width: 80, Height: -1}, {Width: maxTermSize + 1, Height: 24}} {
		if _, err := NewWriter(io.Discard, Config{Header: h}); err == nil {
			t.Errorf("header %+v accepted", h)
		}
	}
	if _, err := NewWriter(io.Discard, Config{Header: Header{Width: 80, Height: 24, Title: strings.Repeat("t", maxHeader)}}); err == nil {
		t.Error("huge header accepted")
	}
	w, _ := NewWriter(io.Discard, Config{Header: Header{Width: 80, Height: 24}})
	if err := w.Resize(0, 10); err == nil {
		t.Error("resize to 0 columns accepted")
	}
}

// failAfter fails writes after n of them.
type failAfter struct{ n int }

func (f *failAfter) Write(p []byte) (int, error) {
	if f.n == 0 {
		return 0, errors.New("disk full")
	}
	f.n--
	return len(p), nil
}

func TestWriteErrorsStick(t *testing.T) {
	w, err := NewWriter(&failAfter{n: 2}, Config{Header: Header{Width: 80, Height: 24}})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Output([]byte("a")); err != nil {
		t.Fatal(err)
	}
	if err := w.Output([]byte("b")); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("failed write: %v", err)
	}
	if err := w.Resize(10, 10); err == nil {
		t.Fatal("write after a failure succeeded")
	}
	if err := w.Flush(); err == nil {
		t.Fatal("flush after a failure succeeded")
	}
}

// syncer counts Flush and Sync calls.
type syncer struct {
	bufio.Writer
	syncs int
}

func (s *syncer) Sync() error { s.syncs++; return nil }

func TestFlushAndSyncPassDown(t *testing.T) {
	var out bytes.Buffer
	s := &syncer{Writer: *bufio.NewWriter(&out)}
	w, _ := NewWriter(s, Config{Header: Header{Width: 80, Height: 24}})
	w.Output([]byte("hi"))
	if out.Len() != 0 {
		t.Fatal("buffered writer wrote before Flush")
	}
	if err := w.Flush(); err != nil || out.Len() == 0 {
		t.Fatalf("flush: %v, %d bytes out", err, out.Len())
	}
	if err := w.Sync(); err != nil || s.syncs != 1 {
		t.Fatalf("sync: %v, %d syncs", err, s.syncs)
	}
}
