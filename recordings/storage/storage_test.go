package storage_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/e2e/targets"
	"github.com/keyway-dev/keyway/portal/objstore"
	"github.com/keyway-dev/keyway/recordings/guacrec"
	. "github.com/keyway-dev/keyway/recordings/storage"
)

// backend is a Store implementation the tests run on, with what it keeps
// under its root once everything is removed.
type backend struct {
	name string
	open func(t *testing.T) (Store, func() []string)
}

// backends are the directory and a bucket on a real S3-compatible server
// (versitygw) on loopback: the same tests, the same outcomes.
var backends = []backend{
	{"dir", func(t *testing.T) (Store, func() []string) {
		d, err := Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return d, func() []string {
			left, _ := filepath.Glob(filepath.Join(d.Root(), "*", "*", "*", "*"))
			in, _ := filepath.Glob(filepath.Join(d.Root(), Incoming, "*"))
			return append(left, in...)
		}
	}},
	{"s3", func(t *testing.T) (Store, func() []string) {
		srv := s3Server(t)
		prefix := "t/" + strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
		b, err := objstore.New(context.Background(), objstore.Config{Bucket: srv.Bucket, Prefix: prefix, Endpoint: srv.Endpoint,
			Region: srv.Region, PathStyle: true, Credentials: srv.Credentials()})
		if err != nil {
			t.Fatal(err)
		}
		return b, func() []string {
			keys, err := srv.Keys(context.Background(), prefix+"/")
			if err != nil {
				t.Fatal(err)
			}
			return keys
		}
	}},
}

var (
	s3Once sync.Once
	s3Srv  *targets.S3
	s3Err  error
)

// s3Server is one server for the package's tests (each test has its own
// prefix in its bucket), stopped by TestMain.
func s3Server(t *testing.T) *targets.S3 {
	s3Once.Do(func() { s3Srv, s3Err = targets.StartS3(context.Background(), s3Dir) })
	if s3Err != nil {
		t.Fatalf("start the S3 test server: %v", s3Err)
	}
	return s3Srv
}

var s3Dir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "keyway-storage-s3-")
	if err != nil {
		panic(err)
	}
	s3Dir = dir
	code := m.Run()
	if s3Srv != nil {
		s3Srv.Stop()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

var ctx = context.Background()

// eachBackend runs test on a store of each backend, in parallel subtests.
func eachBackend(t *testing.T, test func(*testing.T, Store)) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			d, _ := be.open(t)
			test(t, d)
		})
	}
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestAppendResumeCommit(t *testing.T) {
	eachBackend(t, testAppendResumeCommit)
}

func testAppendResumeCommit(t *testing.T, d Store) {
	data := []byte(strings.Repeat("recording bytes ", 100))
	start := time.Date(2026, 5, 6, 23, 59, 0, 0, time.FixedZone("x", -3600))
	rel := Path("S1", start, ".cast")
	if rel != filepath.Join("2026", "05", "07", "S1.cast") {
		t.Fatalf("path %s: dates are UTC", rel)
	}
	unlock, err := d.Lock("S1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Lock("S1"); !errors.Is(err, ErrBusy) {
		t.Fatalf("second lock: %v", err)
	}
	if n, err := d.Append(ctx, "S1", rel, 0, bytes.NewReader(data[:500]), int64(len(data))); err != nil || n != 500 {
		t.Fatalf("first part: %d %v", n, err)
	}
	if _, err := d.Append(ctx, "S1", rel, 600, bytes.NewReader(data[600:]), int64(len(data))); !errors.Is(err, ErrOffset) {
		t.Fatalf("gap: %v", err)
	}
	// A resumed upload may repeat bytes the portal holds.
	if n, err := d.Append(ctx, "S1", rel, 400, bytes.NewReader(data[400:]), int64(len(data))); err != nil || n != int64(len(data)) {
		t.Fatalf("rest: %d %v", n, err)
	}
	got, err := d.Commit(ctx, "S1", rel, int64(len(data)), strings.ToUpper(sum(data)))
	if err != nil || got != sum(data) {
		t.Fatalf("commit: %s %v", got, err)
	}
	unlock()
	f, err := d.Open(ctx, rel)
	if err != nil {
		t.Fatal(err)
	}
	back, _ := io.ReadAll(f)
	f.Close()
	if !bytes.Equal(back, data) {
		t.Fatal("stored bytes differ")
	}
	if n, _ := d.PartSize(ctx, "S1"); n != 0 {
		t.Fatalf("the upload stayed in incoming: %d bytes", n)
	}
}

func TestCommitRefusesMismatch(t *testing.T) {
	eachBackend(t, testCommitRefusesMismatch)
}

func testCommitRefusesMismatch(t *testing.T, d Store) {
	data := []byte("the recording")
	rel := Path("S2", time.Now(), ".cast")
	d.Append(ctx, "S2", rel, 0, bytes.NewReader(data), 100)
	got, err := d.Commit(ctx, "S2", rel, int64(len(data)), sum([]byte("something else")))
	if !errors.Is(err, ErrChecksum) || got != sum(data) {
		t.Fatalf("mismatch: %s %v", got, err)
	}
	if n, _ := d.PartSize(ctx, "S2"); n != 0 {
		t.Fatal("a refused upload was kept")
	}
	d.Append(ctx, "S2", rel, 0, bytes.NewReader(data), 100)
	if _, err := d.Commit(ctx, "S2", rel, 99, sum(data)); !errors.Is(err, ErrSize) {
		t.Fatalf("size mismatch: %v", err)
	}
	if _, err := d.Append(ctx, "S3", Path("S3", time.Now(), ".cast"), 0, bytes.NewReader(data), 5); !errors.Is(err, ErrSize) {
		t.Fatalf("over the limit: %v", err)
	}
}

func TestRefusesUnsafeNames(t *testing.T) {
	eachBackend(t, testRefusesUnsafeNames)
}

func testRefusesUnsafeNames(t *testing.T, d Store) {
	for _, k := range []string{"", "../x", "a/b", "a.b", strings.Repeat("a", 200)} {
		if _, err := d.Lock(k); err == nil {
			t.Errorf("lock %q", k)
		}
		if _, err := d.PartSize(ctx, k); err == nil {
			t.Errorf("part size %q", k)
		}
	}
	for _, rel := range []string{"", "/etc/passwd", "../x.cast", "incoming/S1.part", "a/../../x"} {
		if _, err := d.Open(ctx, rel); err == nil || errors.Is(err, os.ErrNotExist) {
			t.Errorf("open %q: %v", rel, err)
		}
	}
}

// TestIndex keeps a desktop recording's index beside it: cut to the key
// frames inside the recording, damage reported with what came before
// kept, and removed with the recording.
func TestIndex(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			testIndex(t, be)
		})
	}
}

func testIndex(t *testing.T, be backend) {
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
			d, left := be.open(t)
			data := []byte(strings.Repeat("x", 100))
			if tc.index != "" {
				if err := d.PutIndex(ctx, "D1", strings.NewReader(tc.index)); err != nil {
					t.Fatal(err)
				}
			}
			rel := Path("D1", time.Now(), ".guac")
			if _, err := d.Append(ctx, "D1", rel, 0, bytes.NewReader(data), 100); err != nil {
				t.Fatal(err)
			}
			if _, err := d.Commit(ctx, "D1", rel, 100, sum(data)); err != nil {
				t.Fatal(err)
			}
			found, err := d.CommitIndex(ctx, "D1", rel, 100)
			if found != tc.found || (err != nil) != tc.wantErr {
				t.Fatalf("CommitIndex: %v, %v", found, err)
			}
			ix, err := d.Index(ctx, rel)
			if err != nil || len(ix) != len(tc.want) || (len(ix) > 0 && ix[0] != tc.want[0]) {
				t.Fatalf("Index: %+v, %v; want %+v", ix, err, tc.want)
			}
			if err := d.Remove(ctx, rel); err != nil {
				t.Fatal(err)
			}
			if entries := left(); len(entries) != 0 {
				t.Errorf("left after Remove: %v", entries)
			}
		})
	}
}
