package guacrec

import (
	"bytes"
	"encoding/base64"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/keyway-dev/keyway/gateway/guac"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

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
		t.Errorf("%s differs:\n got: %q\nwant: %q", name, got, want)
	}
}

func enc(ins ...guac.Instruction) []byte {
	var b []byte
	for _, in := range ins {
		b = in.AppendTo(b)
	}
	return b
}

// screen is a key frame as the gateway writes it: the size, an image of
// the whole screen, and the sync ending the frame.
func screen(w, h int, fill string, ts int64) []byte {
	data := base64.StdEncoding.EncodeToString([]byte(strings.Repeat(fill, 40)))
	return enc(
		guac.New("size", "0", strconv.Itoa(w), strconv.Itoa(h)),
		guac.New("img", "1", "12", "0", "image/png", "0", "0"),
		guac.New("blob", "1", data),
		guac.New("end", "1"),
		guac.New("sync", strconv.FormatInt(ts, 10)),
	)
}

// change is an incremental frame.
func change(x int, ts int64) []byte {
	return enc(
		guac.New("copy", "0", "0", "0", "10", "10", "12", "0", strconv.Itoa(x), "0"),
		// Lengths count code points, not bytes; a character outside the BMP
		// is written as U+FFFD (see guac.appendElement).
		guac.New("name", "café ✓ 😀"),
		guac.New("sync", strconv.FormatInt(ts, 10)),
	)
}

const t0 = 1714564800000

// record writes a session to a Writer in pieces of chunk bytes, with key
// frames at t0 and t0+10s, and returns the recording, the index and the
// stream as sent.
func record(t *testing.T, chunk int) (rec, index, sent []byte) {
	t.Helper()
	var recBuf, idxBuf bytes.Buffer
	w, err := NewWriter(&recBuf, &idxBuf)
	if err != nil {
		t.Fatal(err)
	}
	send := func(b []byte) {
		t.Helper()
		sent = append(sent, b...)
		for len(b) > 0 {
			n := min(chunk, len(b))
			if _, err := w.Write(b[:n]); err != nil {
				t.Fatal(err)
			}
			b = b[n:]
		}
	}
	key := func() {
		t.Helper()
		if err := w.KeyFrame(); err != nil {
			t.Fatal(err)
		}
	}
	key()
	send(screen(1024, 768, "a", t0))
	for i := range 4 {
		send(change(i, t0+int64(i+1)*2000))
	}
	key()
	send(screen(1280, 800, "b", t0+10000))
	send(change(9, t0+12000))
	key() // no sync follows: not indexed
	send(enc(guac.New("size", "0", "800", "600")))
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return recBuf.Bytes(), idxBuf.Bytes(), sent
}

func TestRecordGolden(t *testing.T) {
	rec, index, sent := record(t, 1<<20)
	if !bytes.Equal(rec, sent) {
		t.Fatal("the recording is not the stream as sent")
	}
	golden(t, "session.guac", rec)
	golden(t, "session.idx", index)

	// Written in pieces that split instructions and characters anywhere,
	// the result is the same.
	for _, chunk := range []int{1, 2, 3, 7, 64} {
		r, i, _ := record(t, chunk)
		if !bytes.Equal(r, rec) || !bytes.Equal(i, index) {
			t.Errorf("in pieces of %d bytes: a different recording or index\n%s", chunk, i)
		}
	}
}

func TestIndexAndStream(t *testing.T) {
	rec, index, _ := record(t, 5)
	ix, err := ReadIndex(bytes.NewReader(index))
	if err != nil {
		t.Fatal(err)
	}
	second := int64(len(screen(1024, 768, "a", t0)) + 4*len(change(0, t0)))
	want := Index{{0, t0}, {second, t0 + 10000}}
	if !reflect.DeepEqual(ix, want) {
		t.Fatalf("index %+v, want %+v", ix, want)
	}
	for _, tc := range []struct {
		ts   int64
		want KeyFrame
	}{
		{0, KeyFrame{}},
		{t0 - 1, KeyFrame{}},
		{t0, want[0]},
		{t0 + 9999, want[0]},
		{t0 + 10000, want[1]},
		{t0 + 1e9, want[1]},
	} {
		if got := ix.At(tc.ts); got != tc.want {
			t.Errorf("At(%d) = %+v, want %+v", tc.ts, got, tc.want)
		}
	}

	// From the second key frame: a recording on its own, starting with
	// the whole screen at the key frame's time.
	s, err := Stream(bytes.NewReader(rec), int64(len(rec)), ix.At(t0+11000))
	if err != nil {
		t.Fatal(err)
	}
	rd := NewReader(s, RecordingLimits)
	var ops []string
	var firstSync string
	for {
		in, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ops = append(ops, in.Opcode)
		if in.Opcode == "sync" && firstSync == "" {
			firstSync = in.Args[0]
		}
	}
	if ops[0] != "size" || firstSync != strconv.FormatInt(t0+10000, 10) || len(ops) != 9 {
		t.Errorf("stream from the key frame: %v, first sync %s", ops, firstSync)
	}

	// The whole recording from the zero key frame; a key frame outside the
	// recording or inside an instruction is refused.
	if s, err := Stream(bytes.NewReader(rec), int64(len(rec)), KeyFrame{}); err != nil || s.Size() != int64(len(rec)) {
		t.Errorf("whole recording: %v", err)
	}
	for _, off := range []int64{-1, int64(len(rec)), int64(len(rec)) + 10, 3} {
		if _, err := Stream(bytes.NewReader(rec), int64(len(rec)), KeyFrame{Offset: off}); !errors.Is(err, ErrBadKeyFrame) {
			t.Errorf("key frame at %d: %v", off, err)
		}
	}

	if got := ix.Within(second); len(got) != 1 {
		t.Errorf("within %d bytes: %+v", second, got)
	}
	if got := ix.Within(second + 1); len(got) != 2 {
		t.Errorf("within %d bytes: %+v", second+1, got)
	}
}

func TestKeyFrameRules(t *testing.T) {
	var rec, idx bytes.Buffer
	w, _ := NewWriter(&rec, &idx)
	w.Write([]byte("4.size,1.0,"))
	if err := w.KeyFrame(); !errors.Is(err, ErrMidInstruction) {
		t.Fatalf("key frame inside an instruction: %v", err)
	}
	w.Write([]byte("3.640,3.480;"))
	if err := w.KeyFrame(); err != nil {
		t.Fatalf("key frame after an instruction: %v", err)
	}
	// Marked twice before the sync: the later one counts.
	w.Write(enc(guac.New("size", "0", "800", "600")))
	w.KeyFrame()
	w.Write(enc(guac.New("size", "0", "1024", "768"), guac.New("sync", "500")))
	// A sync going back in time does not make the index go back.
	w.KeyFrame()
	w.Write(enc(guac.New("sync", "400")))
	ix, err := ReadIndex(&idx)
	if err != nil {
		t.Fatal(err)
	}
	const size = int64(len("4.size,1.0,3.640,3.480;"))
	want := Index{{Offset: 2 * size, Timestamp: 500}, {Offset: 3*size + 1 + int64(len("4.sync,3.500;")), Timestamp: 500}}
	if !reflect.DeepEqual(ix, want) {
		t.Errorf("index %+v, want %+v", ix, want)
	}
}

func TestWriterRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     error
	}{
		{"not guacamole", "GET / HTTP/1.1\r\n", ErrMalformed},
		{"invalid UTF-8", "3.k\xffy;", ErrMalformed},
		{"bad terminator", "3.key:", ErrMalformed},
		{"sync without timestamp", "4.sync;", ErrMalformed},
		{"sync with a bad timestamp", "4.sync,2.1x;", ErrMalformed},
		{"negative sync", "4.sync,2.-1;", ErrMalformed},
		{"huge element", "9999999.x", ErrTooLarge},
		{"too many elements", "1.a" + strings.Repeat(",1.a", maxElements) + ";", ErrTooLarge},
		{"long length", "12345678901.", ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rec bytes.Buffer
			w, _ := NewWriter(&rec, io.Discard)
			good := enc(guac.New("sync", "1"))
			if _, err := w.Write(good); err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write([]byte(tc.in)); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			// Nothing of the bad write is recorded, and the Writer stays failed.
			if !bytes.Equal(rec.Bytes(), good) {
				t.Errorf("recorded %q", rec.Bytes())
			}
			if _, err := w.Write(good); err == nil {
				t.Error("write after a failure succeeded")
			}
		})
	}
	// One instruction over the limit, in pieces.
	w, _ := NewWriter(io.Discard, io.Discard)
	w.Write([]byte("4.blob,1.1," + strconv.Itoa(maxInstruction) + "."))
	var err error
	for i := 0; err == nil && i < maxInstruction/4096+1; i++ {
		_, err = w.Write(bytes.Repeat([]byte("A"), 4096))
	}
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("instruction over %d bytes: %v", maxInstruction, err)
	}
}

func readAll(rd *Reader) ([]guac.Instruction, error) {
	var ins []guac.Instruction
	for {
		in, err := rd.Next()
		if err == io.EOF {
			return ins, nil
		}
		if err != nil {
			return ins, err
		}
		ins = append(ins, in)
	}
}

func TestReaderTruncated(t *testing.T) {
	rec, _, _ := record(t, 1<<20)
	// Cut everywhere inside the last instructions: what was whole reads,
	// and the offset is the end of the last whole instruction.
	last := int64(len(rec) - len(enc(guac.New("size", "0", "800", "600"))))
	for cut := last + 1; cut < int64(len(rec)); cut++ {
		rd := NewReader(bytes.NewReader(rec[:cut]), RecordingLimits)
		if _, err := readAll(rd); !errors.Is(err, ErrTruncated) {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		if rd.Offset() != last {
			t.Fatalf("cut at %d: offset %d, want %d", cut, rd.Offset(), last)
		}
	}
	rd := NewReader(bytes.NewReader(rec), RecordingLimits)
	ins, err := readAll(rd)
	if err != nil || rd.Offset() != int64(len(rec)) || len(ins) != 5+4*3+5+3+1 {
		t.Errorf("whole recording: %d instructions, %v, offset %d", len(ins), err, rd.Offset())
	}
}

func TestReaderRefuses(t *testing.T) {
	limits := Limits{MaxInstruction: 100, MaxElements: 4}
	for _, tc := range []struct {
		name, in string
		want     error
	}{
		{"no length", ".key;", ErrMalformed},
		{"letters", "x.key;", ErrMalformed},
		{"instruction over the limit", "4.blob,95." + strings.Repeat("a", 95) + ";", ErrTooLarge},
		{"element over the limit", "4.blob,999.", ErrTooLarge},
		{"too many elements", "1.a,1.b,1.c,1.d,1.e;", ErrTooLarge},
		{"invalid UTF-8", "3.k\xc3y;", ErrMalformed},
		{"overlong UTF-8", "1.\xc0\xaf;", ErrMalformed},
		{"surrogate", "1.\xed\xa0\x80;", ErrMalformed},
		{"length longer than value", "3.ab;3.nop;", ErrMalformed},
		{"long opcode", "40." + strings.Repeat("o", 40) + ";", ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readAll(NewReader(strings.NewReader(tc.in), limits))
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestReadIndex(t *testing.T) {
	const h = `{"format":"keyway-guac-index","version":1}` + "\n"
	ix, err := ReadIndex(strings.NewReader(h + `{"offset":0,"timestamp":5}` + "\n" + `{"offset":10,"time`))
	if !errors.Is(err, ErrTruncated) || len(ix) != 1 {
		t.Errorf("cut index: %+v, %v", ix, err)
	}
	for _, in := range []string{"", `{"format":"keyway-guac`} {
		if _, err := ReadIndex(strings.NewReader(in)); !errors.Is(err, ErrTruncated) {
			t.Errorf("index %q: %v", in, err)
		}
	}
	for _, tc := range []struct {
		name, in string
		want     error
	}{
		{"other format", `{"format":"other","version":1}` + "\n", ErrMalformed},
		{"version 2", `{"format":"keyway-guac-index","version":2}` + "\n", ErrMalformed},
		{"unknown field", h + `{"offset":0,"timestamp":5,"x":1}` + "\n", ErrMalformed},
		{"missing field", h + `{"offset":0}` + "\n", ErrMalformed},
		{"null field", h + `{"offset":null,"timestamp":1}` + "\n", ErrMalformed},
		{"negative", h + `{"offset":-5,"timestamp":1}` + "\n", ErrMalformed},
		{"fraction", h + `{"offset":1.5,"timestamp":1}` + "\n", ErrMalformed},
		{"offsets repeat", h + `{"offset":5,"timestamp":1}` + "\n" + `{"offset":5,"timestamp":2}` + "\n", ErrMalformed},
		{"time goes back", h + `{"offset":5,"timestamp":2}` + "\n" + `{"offset":6,"timestamp":1}` + "\n", ErrMalformed},
		{"two objects", h + `{"offset":5,"timestamp":2}{}` + "\n", ErrMalformed},
		{"long line", h + `{"offset":5,"timestamp":2` + strings.Repeat(" ", 300) + "}\n", ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ReadIndex(strings.NewReader(tc.in)); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}

	var buf bytes.Buffer
	want := Index{{0, 1}, {100, 1}, {250, 7}}
	if err := WriteIndex(&buf, want); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadIndex(&buf); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("written and read back: %+v, %v", got, err)
	}
}

func FuzzReader(f *testing.F) {
	rec, err := os.ReadFile("testdata/session.guac")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(rec)
	f.Add([]byte("4.sync,13.1714564800000;3.nop;"))
	f.Add([]byte("9.clipboard,2.é✓;4.sync,1.1"))
	limits := Limits{MaxInstruction: 4 << 10, MaxElements: 12}
	f.Fuzz(func(t *testing.T, b []byte) {
		rd := NewReader(bytes.NewReader(b), limits)
		ins, err := readAll(rd)
		off := rd.Offset()
		if off > int64(len(b)) || (err == nil && off != int64(len(b))) {
			t.Fatalf("offset %d of %d bytes, end %v", off, len(b), err)
		}
		// gateway/guac's reader reads the same instructions from the same
		// bytes.
		ref := guac.NewReader(bytes.NewReader(b[:off]), guac.Limits{MaxElement: limits.MaxInstruction, MaxElements: limits.MaxElements})
		for i, in := range ins {
			got, err := ref.Read()
			if err != nil || !reflect.DeepEqual(normalize(got), normalize(in)) {
				t.Fatalf("instruction %d: %+v here, %+v, %v in gateway/guac", i, in, got, err)
			}
		}
		if _, err := ref.Read(); err != io.EOF {
			t.Fatalf("gateway/guac read more: %v", err)
		}
		// The Writer accepts exactly what a Reader with the same limits
		// reads, and ends inside an instruction when the Reader finds the
		// data cut short.
		_, rerr := readAll(NewReader(bytes.NewReader(b), RecordingLimits))
		w, _ := NewWriter(io.Discard, io.Discard)
		_, werr := w.Write(b)
		switch {
		case rerr == nil && (werr != nil || !w.sc.atBoundary()),
			errors.Is(rerr, ErrTruncated) && (werr != nil || w.sc.atBoundary()),
			rerr != nil && !errors.Is(rerr, ErrTruncated) && werr == nil:
			t.Fatalf("reader: %v; writer: %v, at boundary %v", rerr, werr, w.sc.atBoundary())
		}
	})
}

func normalize(in guac.Instruction) guac.Instruction {
	if len(in.Args) == 0 {
		in.Args = nil
	}
	return in
}

func FuzzReadIndex(f *testing.F) {
	idx, err := os.ReadFile("testdata/session.idx")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(idx)
	f.Add([]byte(`{"format":"keyway-guac-index","version":1}` + "\n" + `{"offset":1,"timestamp":2}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ix, err := ReadIndex(bytes.NewReader(b))
		if err != nil && !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) {
			t.Fatalf("unexpected error %v", err)
		}
		for i := 1; i < len(ix); i++ {
			if ix[i].Offset <= ix[i-1].Offset || ix[i].Timestamp < ix[i-1].Timestamp {
				t.Fatalf("out of order: %+v", ix)
			}
		}
		var buf bytes.Buffer
		WriteIndex(&buf, ix)
		again, err := ReadIndex(&buf)
		if err != nil || len(again) != len(ix) || (len(ix) > 0 && !reflect.DeepEqual(again, ix)) {
			t.Fatalf("rewritten index reads back as %+v, %v; was %+v", again, err, ix)
		}
		for _, ts := range []int64{0, 1 << 40} {
			if kf := ix.At(ts); kf.Timestamp > ts {
				t.Fatalf("At(%d) = %+v", ts, kf)
			}
		}
	})
}
