package guac

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf8"
)

func TestEncode(t *testing.T) {
	for _, tc := range []struct {
		in   Instruction
		want string
	}{
		{New("size", "0", "1024", "768"), "4.size,1.0,4.1024,3.768;"},
		{New("sync", "1700000000000"), "4.sync,13.1700000000000;"},
		{New("nop"), "3.nop;"},
		// Lengths count code points, not bytes.
		{New("clipboard", "é✓"), "9.clipboard,2.é✓;"},
		{New("key", "", "1"), "3.key,0.,1.1;"},
		// Outside the BMP, code points and guacamole-common-js's UTF-16
		// units differ: such characters are replaced.
		{New("error", "a😀b𝄞", "512"), "5.error,4.a\uFFFDb\uFFFD,3.512;"},
	} {
		if got := tc.in.String(); got != tc.want {
			t.Errorf("%+v encoded as %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestReadStream(t *testing.T) {
	rd := NewReader(strings.NewReader("5.mouse,3.100,3.200,1.1;3.key,5.65293,1.1;9.clipboard,2.é✓;"), BrowserLimits)
	want := []Instruction{New("mouse", "100", "200", "1"), New("key", "65293", "1"), New("clipboard", "é✓")}
	for _, w := range want {
		got, err := rd.Read()
		if err != nil || !reflect.DeepEqual(got, w) {
			t.Fatalf("read %+v, %v; want %+v", got, err, w)
		}
	}
	if _, err := rd.Read(); err != io.EOF {
		t.Fatalf("after the last instruction: %v", err)
	}
}

// TestAppendBlob checks that a blob written in place reads back as the
// instruction with the base64 of its data.
func TestAppendBlob(t *testing.T) {
	for _, data := range [][]byte{{}, {0}, []byte("\xff\x00text"), bytes.Repeat([]byte{1, 2, 3}, BlobChunk/3)} {
		got, err := Parse(AppendBlob([]byte("x"), "12", data)[1:], Limits{MaxElement: 1 << 14, MaxElements: 4})
		if want := New("blob", "12", base64.StdEncoding.EncodeToString(data)); err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("%d bytes: read %.60v, %v; want %.60v", len(data), got, err, want)
		}
	}
}

// TestReadLongElements reads elements that mix ASCII runs (read many bytes
// at a time) with other characters (a code point at a time), whole and a
// byte at a time, so runs end at every place in the reader's buffer.
func TestReadLongElements(t *testing.T) {
	values := []string{
		strings.Repeat("QUJD", 3000),                  // base64, longer than one read
		"abcdefghijé" + strings.Repeat("x", 17) + "✓", // runs around others
		"ééé", "a", "abcdefgh", "abcdefghi",
	}
	var stream strings.Builder
	for _, v := range values {
		stream.WriteString(New("blob", "1", v).String())
	}
	for _, r := range []func(string) io.Reader{
		func(s string) io.Reader { return strings.NewReader(s) },
		func(s string) io.Reader { return iotest.OneByteReader(strings.NewReader(s)) },
	} {
		rd := NewReader(r(stream.String()), Limits{MaxElement: 1 << 16, MaxElements: 8})
		for _, v := range values {
			in, err := rd.Read()
			if err != nil || len(in.Args) != 2 || in.Args[1] != v {
				t.Fatalf("read %.40q..., %v; want the value %.40q...", in.Args, err, v)
			}
		}
	}
}

func TestReadRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     error
	}{
		{"no length", ".key;", ErrMalformed},
		{"letters in length", "x.key;", ErrMalformed},
		{"huge length", "99999999999.x;", ErrMalformed},
		{"element over limit", "999999.x", ErrTooLarge},
		{"too many elements", "1.a" + strings.Repeat(",1.a", 20) + ";", ErrTooLarge},
		{"bad terminator", "3.key:", ErrMalformed},
		{"invalid utf-8", "3.k\xffy;", ErrMalformed},
		{"truncated", "5.mouse,3.10", io.ErrUnexpectedEOF},
		{"length longer than value", "5.key;", io.ErrUnexpectedEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewReader(strings.NewReader(tc.in), BrowserLimits).Read()
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := Parse([]byte("3.nop;3.nop;"), BrowserLimits); !errors.Is(err, ErrMalformed) {
		t.Fatalf("two instructions parsed as one: %v", err)
	}
}

func FuzzRead(f *testing.F) {
	f.Add([]byte("4.size,1.0,4.1024,3.768;"))
	f.Add([]byte("9.clipboard,2.é✓;"))
	f.Add([]byte("5.mouse,3.100,3.200,1.1;3.key,5.65293,1.1;"))
	f.Fuzz(func(t *testing.T, b []byte) {
		rd := NewReader(strings.NewReader(string(b)), Limits{MaxElement: 1 << 12, MaxElements: 8})
		for {
			in, err := rd.Read()
			if err != nil {
				return
			}
			// Whatever was read re-encodes to something that reads back equal.
			again, err := Parse(in.AppendTo(nil), Limits{MaxElement: 1 << 12, MaxElements: 8})
			if err != nil || !reflect.DeepEqual(normalize(again), normalize(in)) {
				t.Fatalf("round trip of %+v: %+v, %v", in, again, err)
			}
		}
	})
}

// normalize is in as it reads back after encoding: no empty Args, and
// characters outside the Basic Multilingual Plane written as U+FFFD.
func normalize(in Instruction) Instruction {
	bmp := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r > 0xFFFF {
				return utf8.RuneError
			}
			return r
		}, s)
	}
	out := Instruction{Opcode: bmp(in.Opcode)}
	for _, a := range in.Args {
		out.Args = append(out.Args, bmp(a))
	}
	return out
}
