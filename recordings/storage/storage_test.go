package storage

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/recordings/guacrec"
)

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestAppendResumeCommit(t *testing.T) {
	d, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := []byte(strings.Repeat("recording bytes ", 100))
	unlock, err := d.Lock("S1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Lock("S1"); !errors.Is(err, ErrBusy) {
		t.Fatalf("second lock: %v", err)
	}
	if n, err := d.Append("S1", 0, bytes.NewReader(data[:500]), int64(len(data))); err != nil || n != 500 {
		t.Fatalf("first part: %d %v", n, err)
	}
	if _, err := d.Append("S1", 600, bytes.NewReader(data[600:]), int64(len(data))); !errors.Is(err, ErrOffset) {
		t.Fatalf("gap: %v", err)
	}
	// A resumed upload may repeat bytes the portal holds.
	if n, err := d.Append("S1", 400, bytes.NewReader(data[400:]), int64(len(data))); err != nil || n != int64(len(data)) {
		t.Fatalf("rest: %d %v", n, err)
	}
	start := time.Date(2026, 5, 6, 23, 59, 0, 0, time.FixedZone("x", -3600))
	rel := Path("S1", start, ".cast")
	if rel != filepath.Join("2026", "05", "07", "S1.cast") {
		t.Fatalf("path %s: dates are UTC", rel)
	}
	got, err := d.Commit("S1", rel, int64(len(data)), strings.ToUpper(sum(data)))
	if err != nil || got != sum(data) {
		t.Fatalf("commit: %s %v", got, err)
	}
	unlock()
	f, err := d.Open(rel)
	if err != nil {
		t.Fatal(err)
	}
	back, _ := io.ReadAll(f)
	f.Close()
	if !bytes.Equal(back, data) {
		t.Fatal("stored bytes differ")
	}
	if n, _ := d.PartSize("S1"); n != 0 {
		t.Fatalf("the upload stayed in incoming: %d bytes", n)
	}
}

func TestCommitRefusesMismatch(t *testing.T) {
	d, _ := Open(t.TempDir())
	data := []byte("the recording")
	d.Append("S2", 0, bytes.NewReader(data), 100)
	got, err := d.Commit("S2", Path("S2", time.Now(), ".cast"), int64(len(data)), sum([]byte("something else")))
	if !errors.Is(err, ErrChecksum) || got != sum(data) {
		t.Fatalf("mismatch: %s %v", got, err)
	}
	if n, _ := d.PartSize("S2"); n != 0 {
		t.Fatal("a refused upload was kept")
	}
	d.Append("S2", 0, bytes.NewReader(data), 100)
	if _, err := d.Commit("S2", Path("S2", time.Now(), ".cast"), 99, sum(data)); !errors.Is(err, ErrSize) {
		t.Fatalf("size mismatch: %v", err)
	}
	if _, err := d.Append("S3", 0, bytes.NewReader(data), 5); !errors.Is(err, ErrSize) {
		t.Fatalf("over the limit: %v", err)
	}
}

func TestRefusesUnsafeNames(t *testing.T) {
	d, _ := Open(t.TempDir())
	for _, k := range []string{"", "../x", "a/b", "a.b", strings.Repeat("a", 200)} {
		if _, err := d.Lock(k); err == nil {
			t.Errorf("lock %q", k)
		}
		if _, err := d.PartSize(k); err == nil {
			t.Errorf("part size %q", k)
		}
	}
	for _, rel := range []string{"", "/etc/passwd", "../x.cast", "incoming/S1.part", "a/../../x"} {
		if _, err := d.Open(rel); err == nil || errors.Is(err, os.ErrNotExist) {
			t.Errorf("open %q: %v", rel, err)
		}
	}
}

// TestIndex keeps a desktop recording's index beside it: cut to the key
// frames inside the recording, damage reported with what came before
// kept, and removed with the recording.
func TestIndex(t *testing.T) {
	for _, tc := range []struct {
		name    string
		index   string // "" for none sent
		found   bool
		wantErr bool
		want    guacrec.Index
	}{
		{"none", "", false, false, nil},
		{"whole", "{\"format\":\"keyway-guac-index\",\"version\":1}\n{\"offset\":10,\"timestamp\":5}\n{\"offset\":20,\"timestamp\":9}\n", true, false,
			guacrec.Index{{Offset: 10, Timestamp: 5}, {Offset: 20, Timestamp: 9}}},
		{"past the recording", "{\"format\":\"keyway-guac-index\",\"version\":1}\n{\"offset\":10,\"timestamp\":5}\n{\"offset\":900,\"timestamp\":9}\n", true, false,
			guacrec.Index{{Offset: 10, Timestamp: 5}}},
		{"damaged", "{\"format\":\"keyway-guac-index\",\"version\":1}\n{\"offset\":10,\"timestamp\":5}\n{\"offset\":5,\"timestamp\":9}\n", true, true,
			guacrec.Index{{Offset: 10, Timestamp: 5}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			data := []byte(strings.Repeat("x", 100))
			if tc.index != "" {
				if err := d.PutIndex("D1", strings.NewReader(tc.index)); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := d.Append("D1", 0, bytes.NewReader(data), 100); err != nil {
				t.Fatal(err)
			}
			rel := Path("D1", time.Now(), ".guac")
			if _, err := d.Commit("D1", rel, 100, sum(data)); err != nil {
				t.Fatal(err)
			}
			found, err := d.CommitIndex("D1", rel, 100)
			if found != tc.found || (err != nil) != tc.wantErr {
				t.Fatalf("CommitIndex: %v, %v", found, err)
			}
			ix, err := d.Index(rel)
			if err != nil || len(ix) != len(tc.want) || (len(ix) > 0 && ix[0] != tc.want[0]) {
				t.Fatalf("Index: %+v, %v; want %+v", ix, err, tc.want)
			}
			if err := d.Remove(rel); err != nil {
				t.Fatal(err)
			}
			entries, _ := filepath.Glob(filepath.Join(d.Root(), "*", "*", "*", "*"))
			if len(entries) != 0 {
				t.Errorf("left after Remove: %v", entries)
			}
		})
	}
}
