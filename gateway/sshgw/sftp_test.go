package sshgw

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// countingWriter records the size of each write.
type countingWriter struct {
	bytes.Buffer
	writes []int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes = append(w.writes, len(p))
	return w.Buffer.Write(p)
}

func packet(size int) []byte {
	p := make([]byte, 4+size)
	binary.BigEndian.PutUint32(p, uint32(size))
	for i := 4; i < len(p); i++ {
		p[i] = byte(i)
	}
	return p
}

func TestCopyPackets(t *testing.T) {
	for _, tc := range []struct {
		name    string
		sizes   []int
		wantErr bool
	}{
		{"small packets", []int{1, 9, 30}, false},
		{"an upload's packets", []int{255 << 10, 255 << 10, 100}, false},
		{"the largest packet", []int{maxPacket - 4}, false},
		{"too large", []int{maxPacket - 3}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var in bytes.Buffer
			for _, s := range tc.sizes {
				in.Write(packet(s))
			}
			want := bytes.Clone(in.Bytes())
			var out countingWriter
			n, err := copyPackets(&out, &in)
			if tc.wantErr {
				if err == nil || out.Len() != 0 {
					t.Fatalf("oversized packet: %v, %d bytes passed", err, out.Len())
				}
				return
			}
			if n != int64(len(want)) || !bytes.Equal(out.Bytes(), want) || len(out.writes) != len(tc.sizes) {
				t.Fatalf("copied %d bytes in %d writes, want %d in %d (err %v)", n, len(out.writes), len(want), len(tc.sizes), err)
			}
		})
	}
}
