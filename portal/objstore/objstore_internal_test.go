package objstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/e2e/targets"
	"github.com/keyway-dev/keyway/recordings/storage"
)

// TestCommitAgainAfterLostState: the upload was completed but its state
// object stayed (its deletion, or the answer to the gateway, was lost).
// The gateway sends the end again and commits again; that must succeed
// on the object already there, not fail forever on the finished
// multipart upload.
func TestCommitAgainAfterLostState(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := targets.NewS3(t)
	b, err := New(ctx, Config{Bucket: srv.Bucket, Endpoint: srv.Endpoint, Region: srv.Region, PathStyle: true,
		Credentials: srv.Credentials(), PartSize: minPartSize})
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("0123456789abcdef"), (minPartSize+1<<20)/16)
	sum := sha256.Sum256(data)
	want := hex.EncodeToString(sum[:])
	rel := storage.Path("AGAIN", time.Now(), ".cast")
	if _, err := b.Append(ctx, "AGAIN", rel, 0, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	before, err := b.load(ctx, "AGAIN")
	if err != nil || before == nil || before.parts != 1 || len(before.tail) != 1<<20 {
		t.Fatalf("state before commit: %+v, %v", before, err)
	}
	if got, err := b.Commit(ctx, "AGAIN", rel, int64(len(data)), want); err != nil || got != want {
		t.Fatalf("commit: %s %v", got, err)
	}
	if err := b.save(ctx, "AGAIN", before); err != nil {
		t.Fatal(err)
	}
	// The gateway asks, hears all is held, sends nothing more, commits.
	if n, err := b.Append(ctx, "AGAIN", rel, int64(len(data)), bytes.NewReader(nil), int64(len(data))); err != nil || n != int64(len(data)) {
		t.Fatalf("append of nothing: %d %v", n, err)
	}
	if got, err := b.Commit(ctx, "AGAIN", rel, int64(len(data)), want); err != nil || got != want {
		t.Fatalf("second commit: %s %v", got, err)
	}
	if n, err := b.PartSize(ctx, "AGAIN"); n != 0 || err != nil {
		t.Fatalf("state left: %d %v", n, err)
	}
	f, err := b.Open(ctx, rel)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if back, err := io.ReadAll(f); err != nil || !bytes.Equal(back, data) {
		t.Fatalf("read back %d bytes, %v", len(back), err)
	}
}

// TestEmptyRecording: a recording of no bytes (a session that ended at
// once) is stored with one PUT and reads back empty.
func TestEmptyRecording(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := targets.NewS3(t)
	b, err := New(ctx, Config{Bucket: srv.Bucket, Endpoint: srv.Endpoint, Region: srv.Region, PathStyle: true, Credentials: srv.Credentials()})
	if err != nil {
		t.Fatal(err)
	}
	rel := storage.Path("EMPTY", time.Now(), ".cast")
	if n, err := b.Append(ctx, "EMPTY", rel, 0, bytes.NewReader(nil), 0); n != 0 || err != nil {
		t.Fatalf("append: %d %v", n, err)
	}
	empty := sha256.Sum256(nil)
	if _, err := b.Commit(ctx, "EMPTY", rel, 0, hex.EncodeToString(empty[:])); err != nil {
		t.Fatal(err)
	}
	f, err := b.Open(ctx, rel)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if back, err := io.ReadAll(f); err != nil || len(back) != 0 {
		t.Fatalf("read back %q, %v", back, err)
	}
}
