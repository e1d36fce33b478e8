package asciicast

import (
	"bytes"
	"errors"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// readAll reads every event and returns them with the final error (nil at
// a clean end).
func readAll(rd *Reader) ([]Event, error) {
	var evs []Event
	for {
		ev, err := rd.Next()
		if err == io.EOF {
			return evs, nil
		}
		if err != nil {
			return evs, err
		}
		evs = append(evs, ev)
	}
}

func TestReadOtherRecorders(t *testing.T) {
	// A recording as asciinema writes it: spaces after separators, non-ASCII
	// escaped, times with few decimals, header keys we do not model.
	f, err := os.Open("testdata/other.cast")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd, err := NewReader(f, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if h := rd.Header(); h.Width != 120 || h.Height != 40 || h.Timestamp != 1600000000 || h.Env["TERM"] != "xterm" || h.Keyway != nil {
		t.Errorf("header %+v", h)
	}
	evs, err := readAll(rd)
	if err != nil {
		t.Fatal(err)
	}
	want := []Event{
		{500 * time.Millisecond, Output, "$ echo café\r\n"},
		{500 * time.Millisecond, Marker, "chapter one"},
		{1250 * time.Millisecond, Output, "café 😀\r\n"},
		{2 * time.Second, Resize, "90x30"},
		{3*time.Second + time.Microsecond, Input, "exit\r"},
	}
	if !reflect.DeepEqual(evs, want) {
		t.Errorf("events\n%+v\nwant\n%+v", evs, want)
	}
}

func TestReadTruncated(t *testing.T) {
	b, err := os.ReadFile("testdata/cut.cast")
	if err != nil {
		t.Fatal(err)
	}
	rd, err := NewReader(bytes.NewReader(b), DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := readAll(rd)
	if !errors.Is(err, ErrTruncated) {
		t.Fatalf("end of a cut recording: %v", err)
	}
	if len(evs) != 1 || evs[0].Data != "one" {
		t.Errorf("events before the cut: %+v", evs)
	}
	// Cut at the offset, the recording reads cleanly.
	if want := int64(bytes.LastIndexByte(b, '\n') + 1); rd.Offset() != want {
		t.Fatalf("offset %d, want %d", rd.Offset(), want)
	}
	rd, _ = NewReader(bytes.NewReader(b[:rd.Offset()]), DefaultLimits)
	if evs, err := readAll(rd); err != nil || len(evs) != 1 {
		t.Errorf("after truncating: %d events, %v", len(evs), err)
	}

	// Cut inside the header, or before anything was written.
	for _, in := range []string{"", `{"version":2,"wid`} {
		if _, err := NewReader(strings.NewReader(in), DefaultLimits); !errors.Is(err, ErrTruncated) {
			t.Errorf("header %q: %v", in, err)
		}
	}
}

func TestReadRefuses(t *testing.T) {
	const h = `{"version":2,"width":80,"height":24}` + "\n"
	for _, tc := range []struct {
		name, in string
		want     error
	}{
		{"version 1", `{"version":1,"width":80,"height":24}` + "\n", ErrMalformed},
		{"no size", `{"version":2}` + "\n", ErrMalformed},
		{"huge size", `{"version":2,"width":80,"height":100000}` + "\n", ErrMalformed},
		{"header is an array", `[2,80,24]` + "\n", ErrMalformed},
		{"header not JSON", "version 2\n", ErrMalformed},
		{"fractional width", `{"version":2,"width":80.5,"height":24}` + "\n", ErrMalformed},
		{"invalid UTF-8", h + "[1.0, \"o\", \"\xff\"]\n", ErrMalformed},
		{"two elements", h + `[1.0, "o"]` + "\n", ErrMalformed},
		{"four elements", h + `[1.0, "o", "a", "b"]` + "\n", ErrMalformed},
		{"negative time", h + `[-1, "o", "a"]` + "\n", ErrMalformed},
		{"time as string", h + `["1", "o", "a"]` + "\n", ErrMalformed},
		{"null time", h + `[null, "o", "a"]` + "\n", ErrMalformed},
		{"huge time", h + `[1e300, "o", "a"]` + "\n", ErrMalformed},
		{"time goes back", h + `[2, "o", "a"]` + "\n" + `[1, "o", "b"]` + "\n", ErrMalformed},
		{"unknown type", h + `[1, "x", "a"]` + "\n", ErrMalformed},
		{"long type", h + `[1, "oo", "a"]` + "\n", ErrMalformed},
		{"data not a string", h + `[1, "o", 5]` + "\n", ErrMalformed},
		{"null data", h + `[1, "o", null]` + "\n", ErrMalformed},
		{"bad resize", h + `[1, "r", "80by24"]` + "\n", ErrMalformed},
		{"zero resize", h + `[1, "r", "0x24"]` + "\n", ErrMalformed},
		{"empty line", h + "\n", ErrMalformed},
		{"object event", h + `{"t":1}` + "\n", ErrMalformed},
		{"trailing data", h + `[1, "o", "a"] x` + "\n", ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rd, err := NewReader(strings.NewReader(tc.in), DefaultLimits)
			if err == nil {
				_, err = readAll(rd)
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestReadLimits(t *testing.T) {
	const h = `{"version":2,"width":80,"height":24}` + "\n"
	long := h + `[1, "o", "` + strings.Repeat("a", 200) + `"]` + "\n"
	rd, err := NewReader(strings.NewReader(long), Limits{MaxLine: 100, MaxEvents: 10})
	if err == nil {
		_, err = readAll(rd)
	}
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("long line: %v", err)
	}
	// Longer than the reader's buffer, to cross its refills.
	long = h + `[1, "o", "` + strings.Repeat("a", 200<<10) + `"]` + "\n"
	rd, _ = NewReader(strings.NewReader(long), Limits{MaxLine: 100 << 10, MaxEvents: 10})
	if _, err := readAll(rd); !errors.Is(err, ErrTooLarge) {
		t.Errorf("very long line: %v", err)
	}
	rd, _ = NewReader(strings.NewReader(long), Limits{MaxLine: 300 << 10, MaxEvents: 10})
	if evs, err := readAll(rd); err != nil || len(evs) != 1 || len(evs[0].Data) != 200<<10 {
		t.Errorf("very long line within the limit: %v", err)
	}

	many := h + strings.Repeat(`[1, "o", "a"]`+"\n", 3)
	rd, _ = NewReader(strings.NewReader(many), Limits{MaxLine: 100, MaxEvents: 3})
	if evs, err := readAll(rd); err != nil || len(evs) != 3 {
		t.Errorf("exactly MaxEvents: %d events, %v", len(evs), err)
	}
	rd, _ = NewReader(strings.NewReader(many), Limits{MaxLine: 100, MaxEvents: 2})
	if evs, err := readAll(rd); !errors.Is(err, ErrTooLarge) || len(evs) != 2 {
		t.Errorf("over MaxEvents: %d events, %v", len(evs), err)
	}
}

// errReader fails after its data.
type errReader struct{ data string }

func (r *errReader) Read(p []byte) (int, error) {
	if r.data == "" {
		return 0, errors.New("disk on fire")
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestReadErrorIsNotTruncation(t *testing.T) {
	rd, err := NewReader(&errReader{`{"version":2,"width":80,"height":24}` + "\n" + `[1, "o"`}, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rd.Next(); err == nil || errors.Is(err, ErrTruncated) || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("read error: %v", err)
	}
}

func FuzzReader(f *testing.F) {
	for _, name := range []string{"testdata/session.cast", "testdata/other.cast", "testdata/cut.cast"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"version":2,"width":80,"height":24}` + "\n" + `[1e-7, "r", "1x1"]` + "\n"))
	limits := Limits{MaxLine: 4 << 10, MaxEvents: 64}
	f.Fuzz(func(t *testing.T, b []byte) {
		rd, err := NewReader(bytes.NewReader(b), limits)
		if err != nil {
			return
		}
		evs, err := readAll(rd)
		off := rd.Offset()
		if off > int64(len(b)) || (err == nil && off != int64(len(b))) {
			t.Fatalf("offset %d of %d bytes, end %v", off, len(b), err)
		}
		var s stripper
		var text []byte
		for i, ev := range evs {
			if ev.Kind == Output {
				text = s.strip(text, ev.Data)
			}
			if !ev.Kind.valid() || ev.Time < 0 || (i > 0 && ev.Time < evs[i-1].Time) {
				t.Fatalf("event %d: %+v", i, ev)
			}
			if ev.Kind == Resize {
				if _, _, err := ev.Size(); err != nil {
					t.Fatalf("resize event %+v: %v", ev, err)
				}
			}
		}
		if !utf8.Valid(text) || bytes.ContainsAny(text, "\x1b\x07\r\u009b") {
			t.Fatalf("plain text %q", text)
		}
		// What was read up to the offset reads again, the same and cleanly.
		again, err := NewReader(bytes.NewReader(b[:off]), limits)
		if err != nil {
			t.Fatalf("header up to the offset: %v", err)
		}
		evs2, err := readAll(again)
		if err != nil || !reflect.DeepEqual(evs, evs2) {
			t.Fatalf("up to the offset: %d events, %v; first read %d", len(evs2), err, len(evs))
		}
	})
}

// FuzzWriter writes arbitrary bytes, split arbitrarily, and checks they
// read back as their replacement-decoded text.
func FuzzWriter(f *testing.F) {
	f.Add([]byte("caf\xc3\xa9 \xe2\x9c\x93"), uint8(4))
	f.Add([]byte("\xf0\x9f\x98\x80\xe2\x82A\xed\xa0\x80"), uint8(1))
	f.Fuzz(func(t *testing.T, b []byte, step uint8) {
		var buf bytes.Buffer
		w, err := NewWriter(&buf, Config{Header: Header{Width: 80, Height: 24}, Input: true})
		if err != nil {
			t.Fatal(err)
		}
		n := max(int(step), 1)
		for i := 0; i < len(b); i += n {
			chunk := b[i:min(i+n, len(b))]
			if err := w.Output(chunk); err != nil {
				t.Fatal(err)
			}
			if err := w.Input(chunk); err != nil {
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
		evs, err := readAll(rd)
		if err != nil {
			t.Fatal(err)
		}
		var out, in strings.Builder
		for _, ev := range evs {
			map[Kind]*strings.Builder{Output: &out, Input: &in}[ev.Kind].WriteString(ev.Data)
		}
		want := replaceInvalid(b)
		if out.String() != want || in.String() != want {
			t.Fatalf("output %q, input %q, want %q", out.String(), in.String(), want)
		}
	})
}

// replaceInvalid decodes b at once, the way the Writer does piecewise.
func replaceInvalid(b []byte) string {
	var s strings.Builder
	for len(b) > 0 {
		if b[0] < 0x80 {
			s.WriteByte(b[0])
			b = b[1:]
			continue
		}
		n, need := subpart(b)
		if n == need {
			s.Write(b[:n])
		} else {
			s.WriteRune('\ufffd')
		}
		b = b[n:]
	}
	return s.String()
}
