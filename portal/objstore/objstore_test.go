package objstore_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/keyway-dev/keyway/e2e/targets"
	"github.com/keyway-dev/keyway/portal/objstore"
	"github.com/keyway-dev/keyway/recordings/storage"
)

const partSize = 5 << 20 // S3's least, so that tests cross parts quickly

func newBucket(t *testing.T, srv *targets.S3, prefix string, client *http.Client) *objstore.Bucket {
	t.Helper()
	b, err := objstore.New(context.Background(), objstore.Config{Bucket: srv.Bucket, Prefix: prefix, Endpoint: srv.Endpoint,
		Region: srv.Region, PathStyle: true, Credentials: srv.Credentials(), HTTPClient: client, PartSize: partSize})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{1}).Read(b)
	return b
}

func hexSHA(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// brokenReader gives its bytes, then an error: a connection that broke.
type brokenReader struct{ r io.Reader }

var errBroken = errors.New("connection reset by peer")

func (b brokenReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		return n, errBroken
	}
	return n, err
}

// TestUploadInPiecesAcrossProcesses sends a recording of nearly three
// parts in three pieces to two Bucket values (two portal processes): the
// first breaks mid-part, the second repeats bytes held and breaks, the
// third ends it; then the other process commits it. The state between
// pieces is in the bucket only; the recording is one multipart object.
func TestUploadInPiecesAcrossProcesses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := targets.NewS3(t)
	a, b := newBucket(t, srv, "rec", nil), newBucket(t, srv, "rec", nil)
	data := randomBytes(2*partSize + 3<<20)
	size := int64(len(data))
	rel := storage.Path("S1", time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC), ".cast")

	cut1 := int64(partSize + 1<<20)
	n, err := a.Append(ctx, "S1", rel, 0, brokenReader{bytes.NewReader(data[:cut1])}, size)
	if !errors.Is(err, errBroken) || n != cut1 {
		t.Fatalf("first piece: %d, %v; want %d and the break", n, err, cut1)
	}
	if held, err := b.PartSize(ctx, "S1"); err != nil || held != cut1 {
		t.Fatalf("the other process sees %d, %v; want %d", held, err, cut1)
	}
	// Resent from before what is held (the part's bytes and some of the
	// tail's), then broken again past the second part.
	cut2 := int64(2*partSize + 1<<20)
	from := int64(partSize - 100)
	if n, err := b.Append(ctx, "S1", rel, from, brokenReader{bytes.NewReader(data[from:cut2])}, size); !errors.Is(err, errBroken) || n != cut2 {
		t.Fatalf("second piece: %d, %v; want %d", n, err, cut2)
	}
	if _, err := a.Append(ctx, "S1", rel, cut2+1, bytes.NewReader(data[cut2+1:]), size); !errors.Is(err, storage.ErrOffset) {
		t.Fatalf("a piece after a gap: %v", err)
	}
	if n, err := a.Append(ctx, "S1", rel, cut2, bytes.NewReader(data[cut2:]), size); err != nil || n != size {
		t.Fatalf("last piece: %d, %v", n, err)
	}
	if sum, err := b.Commit(ctx, "S1", rel, size, strings.ToUpper(hexSHA(data))); err != nil || sum != hexSHA(data) {
		t.Fatalf("commit: %s, %v", sum, err)
	}
	head, err := srv.Client().HeadObject(ctx, &s3.HeadObjectInput{Bucket: &srv.Bucket, Key: aws.String("rec/2026/05/06/S1.cast")})
	if err != nil || aws.ToInt64(head.ContentLength) != size || !strings.HasSuffix(strings.Trim(aws.ToString(head.ETag), `"`), "-3") {
		t.Fatalf("the object: %+v, %v; want %d bytes in 3 parts", head, err, size)
	}
	if keys, err := srv.Keys(ctx, "rec/incoming/"); err != nil || len(keys) != 0 {
		t.Fatalf("left in incoming: %v, %v", keys, err)
	}
	f, err := a.Open(ctx, rel)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	back, err := io.ReadAll(f)
	if err != nil || !bytes.Equal(back, data) {
		t.Fatalf("read back %d bytes, %v; want the %d uploaded", len(back), err, size)
	}
}

// TestCommitRefusesAcrossParts checks the SHA-256 kept across parts: a
// byte changed in a resent piece that overlaps what is held is found.
func TestCommitRefusesAcrossParts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := targets.NewS3(t)
	b := newBucket(t, srv, "", nil)
	data := randomBytes(partSize + 10)
	rel := storage.Path("S2", time.Now(), ".cast")
	bad := bytes.Clone(data)
	bad[partSize+5] ^= 1
	if _, err := b.Append(ctx, "S2", rel, 0, bytes.NewReader(bad), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Commit(ctx, "S2", rel, int64(len(data)), hexSHA(data)); !errors.Is(err, storage.ErrChecksum) {
		t.Fatalf("commit of changed bytes: %v", err)
	}
	if held, err := b.PartSize(ctx, "S2"); err != nil || held != 0 {
		t.Fatalf("after a refused commit %d bytes are held, %v", held, err)
	}
	if keys, _ := srv.Keys(ctx, ""); len(keys) != 0 {
		t.Fatalf("left in the bucket: %v", keys)
	}
	// A multipart upload left behind would cost storage: it was aborted.
	ups, err := srv.Client().ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &srv.Bucket})
	if err != nil || len(ups.Uploads) != 0 {
		t.Fatalf("multipart uploads left: %+v, %v", ups, err)
	}
}

// TestSeekFetchesARange reads near the end of a large recording and
// counts the bytes fetched from the server: a window, not the object.
func TestSeekFetchesARange(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := targets.NewS3(t)
	data := randomBytes(12 << 20)
	rel := storage.Path("S3", time.Now(), ".guac")
	var counted targets.ByteCounter
	b := newBucket(t, srv, "p", counted.Client())
	if _, err := b.Append(ctx, "S3", rel, 0, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Commit(ctx, "S3", rel, int64(len(data)), hexSHA(data)); err != nil {
		t.Fatal(err)
	}
	f, err := b.Open(ctx, rel)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	counted.Reset()
	p := make([]byte, 4096)
	off := int64(len(data) - 10000)
	if n, err := f.ReadAt(p, off); n != len(p) || err != nil || !bytes.Equal(p, data[off:off+4096]) {
		t.Fatalf("ReadAt: %d, %v", n, err)
	}
	if got := counted.Bytes(); got > 64<<10 {
		t.Fatalf("a 4 KiB read near the end fetched %d bytes of %d", got, len(data))
	}
	// Read on from the middle: everything after it, and nothing before.
	counted.Reset()
	if _, err := f.Seek(6<<20, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(f)
	if err != nil || !bytes.Equal(rest, data[6<<20:]) {
		t.Fatalf("read from the middle: %d bytes, %v", len(rest), err)
	}
	if got := counted.Bytes(); got != int64(len(rest)) {
		t.Fatalf("reading %d bytes fetched %d", len(rest), got)
	}
	if n, err := f.ReadAt(p, int64(len(data)-10)); n != 10 || err != io.EOF {
		t.Fatalf("ReadAt across the end: %d, %v; want 10, EOF", n, err)
	}
	if _, err := b.Open(ctx, storage.Path("NONE", time.Now(), ".guac")); err == nil {
		t.Fatal("opened a recording that is not there")
	}
}

// TestBoundsFromTheServer: what the bucket holds is not trusted to be
// small or well formed. A damaged upload state is discarded, so that the
// gateway sends the recording again instead of being refused for ever.
func TestBoundsFromTheServer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := targets.NewS3(t)
	b := newBucket(t, srv, "x", nil)
	c := srv.Client()
	put := func(key string, body []byte, meta map[string]string) {
		t.Helper()
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &srv.Bucket, Key: &key, Body: bytes.NewReader(body), Metadata: meta}); err != nil {
			t.Fatal(err)
		}
	}
	for name, meta := range map[string]map[string]string{
		"no metadata": nil,
		"parts":       {"parts": "-1", "part-size": "5242880", "sha256-state": "", "target": "eA"},
		"part size":   {"parts": "0", "part-size": "1", "sha256-state": "", "target": "eA"},
		"hash state":  {"parts": "0", "part-size": "5242880", "sha256-state": "bm9wZQ==", "target": "eA"},
	} {
		put("x/incoming/BAD.part", []byte("tail"), meta)
		if n, err := b.PartSize(ctx, "BAD"); n != 0 || err != nil {
			t.Errorf("%s: %d, %v; want a fresh start", name, n, err)
		}
		if keys, _ := srv.Keys(ctx, "x/incoming/"); len(keys) != 0 {
			t.Errorf("%s: the damaged state stayed: %v", name, keys)
		}
	}
	// The same through Append: the piece starts a new upload.
	put("x/incoming/BAD.part", make([]byte, partSize+1), map[string]string{"parts": "0", "part-size": "5242880", "sha256-state": "", "target": "eA"})
	brel := storage.Path("BAD", time.Now(), ".cast")
	if n, err := b.Append(ctx, "BAD", brel, 0, strings.NewReader("abc"), 3); n != 3 || err != nil {
		t.Fatalf("append over a damaged state: %d, %v", n, err)
	}
	if _, err := b.Commit(ctx, "BAD", brel, 3, hexSHA([]byte("abc"))); err != nil {
		t.Fatal(err)
	}
	if err := b.Remove(ctx, brel); err != nil {
		t.Fatal(err)
	}
	// An index larger than any the portal stores is not read.
	rel := storage.Path("BIG", time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC), ".guac")
	put("x/2026/01/02/BIG.idx", make([]byte, storage.MaxIndex+1), nil)
	if _, err := b.Index(ctx, rel); !errors.Is(err, storage.ErrSize) {
		t.Fatalf("an index over the bound: %v", err)
	}
	if err := b.Remove(ctx, rel); err != nil {
		t.Fatal(err)
	}
	if keys, _ := srv.Keys(ctx, "x/"); len(keys) != 0 {
		t.Fatalf("left: %v", keys)
	}
}

// TestWritable fails on a bucket that is not there and passes on one
// that is.
func TestWritable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := targets.NewS3(t)
	if err := newBucket(t, srv, "w", nil).Writable(ctx); err != nil {
		t.Fatalf("writable bucket: %v", err)
	}
	gone := *srv
	gone.Bucket = "no-such-bucket"
	if err := newBucket(t, &gone, "", nil).Writable(ctx); err == nil || !strings.Contains(err.Error(), "s3://no-such-bucket/") {
		t.Fatalf("missing bucket: %v", err)
	}
	if keys, _ := srv.Keys(ctx, ""); len(keys) != 0 {
		t.Fatalf("the check left %v", keys)
	}
}

func TestParseURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, bucket, prefix string
		ok                 bool
	}{
		{"s3://recs", "recs", "", true},
		{"s3://recs/", "recs", "", true},
		{"s3://recs/keyway/prod/", "recs", "keyway/prod", true},
		{"s3://recs/a//b", "", "", false},
		{"s3://recs/a/../b", "", "", false},
		{"s3:///prefix", "", "", false},
		{"https://recs/x", "", "", false},
		{"s3://user:pw@recs/x", "", "", false},
		{"s3://recs/x?versionId=1", "", "", false},
		{"recs/x", "", "", false},
	} {
		b, p, err := objstore.ParseURL(tc.in)
		if (err == nil) != tc.ok || b != tc.bucket || p != tc.prefix {
			t.Errorf("ParseURL(%q) = %q, %q, %v", tc.in, b, p, err)
		}
	}
}

// FuzzParseURL: whatever it accepts names a bucket and a prefix without
// empty, . or .. segments.
func FuzzParseURL(f *testing.F) {
	f.Add("s3://b/p/q")
	f.Add("s3://b/../x")
	f.Fuzz(func(t *testing.T, s string) {
		b, p, err := objstore.ParseURL(s)
		if err != nil {
			return
		}
		if b == "" || strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") {
			t.Fatalf("%q: %q, %q", s, b, p)
		}
		for _, seg := range strings.Split(p, "/") {
			if p != "" && (seg == "" || seg == "." || seg == "..") {
				t.Fatalf("%q: prefix %q", s, p)
			}
		}
	})
}

// failingParts fails every UploadPart request while on.
type failingParts struct{ on atomic.Bool }

func (f *failingParts) RoundTrip(req *http.Request) (*http.Response, error) {
	if f.on.Load() && req.Method == http.MethodPut && req.URL.Query().Has("partNumber") {
		return nil, errors.New("injected: the S3 server is unreachable")
	}
	return http.DefaultTransport.RoundTrip(req)
}

// TestPartUploadFails: the S3 server fails while a whole part waits to
// be uploaded. The bytes received are kept (the part as the upload's
// tail), the gateway is told how many are held, and the next piece
// uploads the part and goes on.
func TestPartUploadFails(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := targets.NewS3(t)
	fail := &failingParts{}
	b := newBucket(t, srv, "f", &http.Client{Transport: fail})
	data := randomBytes(partSize + 1000)
	size := int64(len(data))
	rel := storage.Path("PF", time.Now(), ".cast")
	fail.on.Store(true)
	n, err := b.Append(ctx, "PF", rel, 0, bytes.NewReader(data[:partSize+10]), size)
	if err == nil || n != partSize {
		t.Fatalf("append while parts fail: %d, %v; want %d held and the error", n, err, partSize)
	}
	fail.on.Store(false)
	if held, err := b.PartSize(ctx, "PF"); held != partSize || err != nil {
		t.Fatalf("held after the failure: %d, %v", held, err)
	}
	if n, err := b.Append(ctx, "PF", rel, partSize, bytes.NewReader(data[partSize:]), size); n != size || err != nil {
		t.Fatalf("resumed: %d, %v", n, err)
	}
	if _, err := b.Commit(ctx, "PF", rel, size, hexSHA(data)); err != nil {
		t.Fatal(err)
	}
	f, err := b.Open(ctx, rel)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if back, _ := io.ReadAll(f); !bytes.Equal(back, data) {
		t.Fatal("stored bytes differ")
	}
}

// TestHungServer: a server that accepts connections and never answers
// fails each call within the timeout, instead of holding an upload (and
// its lock) for ever.
func TestHungServer(t *testing.T) {
	t.Parallel()
	addr := targets.NewSilent(t)
	b, err := objstore.New(context.Background(), objstore.Config{Bucket: "b", Endpoint: "http://" + addr, PathStyle: true,
		Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("k", "s", ""), Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	start := time.Now()
	if err := b.Writable(ctx); err == nil {
		t.Fatal("a hung server is writable")
	}
	if _, err := b.PartSize(ctx, "H1"); err == nil {
		t.Fatal("part size from a hung server")
	}
	rel := storage.Path("H1", time.Now(), ".cast")
	if _, err := b.Append(ctx, "H1", rel, 0, strings.NewReader("x"), 1); err == nil {
		t.Fatal("append to a hung server")
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Fatalf("three calls to a hung server took %s", took)
	}
}

// TestVideoNames: video exports are named by a SHA-256 only; nothing
// else reaches the bucket.
func TestVideoNames(t *testing.T) {
	t.Parallel()
	b, err := objstore.New(context.Background(), objstore.Config{Bucket: "b", Endpoint: "http://127.0.0.1:1", Region: "us-east-1",
		PathStyle: true, Credentials: credentials.NewStaticCredentialsProvider("k", "s", "")})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"", "x.mp4", "../" + strings.Repeat("a", 64) + ".mp4", strings.Repeat("A", 64) + ".mp4",
		strings.Repeat("a", 64), strings.Repeat("a", 64) + ".mp4/x"} {
		if err := b.PutVideo(context.Background(), name, strings.NewReader("v"), 1); err == nil || !strings.Contains(err.Error(), "invalid video name") {
			t.Errorf("PutVideo(%q): %v", name, err)
		}
		if _, _, err := b.OpenVideo(context.Background(), name); err == nil || !strings.Contains(err.Error(), "invalid video name") {
			t.Errorf("OpenVideo(%q): %v", name, err)
		}
	}
}
