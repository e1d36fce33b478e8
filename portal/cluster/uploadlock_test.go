package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/e2e/targets"
	"github.com/keyway-dev/keyway/portal/objstore"
	"github.com/keyway-dev/keyway/recordings/storage"
)

// TestUploadLockAcrossReplicas: two replicas on one PostgreSQL, each
// with its own client of one bucket on a real S3-compatible server
// (versitygw). While one holds a recording's upload lock the other is
// told ErrBusy; then both append the same recording at once, a chunk per
// lock, retrying as gateways do: never both at a time, and the bucket
// holds the recording whole.
func TestUploadLockAcrossReplicas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pg := newPostgres(t)
	srv := targets.NewS3(t)
	recs := make([]storage.Store, 2)
	for i := range recs {
		c, err := Open(ctx, Config{URL: dsn(pg), ID: fmt.Sprint("up", i), Address: "127.0.0.1:1"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		b, err := objstore.New(ctx, objstore.Config{Bucket: srv.Bucket, Prefix: "recs", Endpoint: srv.Endpoint, PathStyle: true,
			Region: srv.Region, Credentials: srv.Credentials(), PartSize: 5 << 20})
		if err != nil {
			t.Fatal(err)
		}
		recs[i] = c.Recordings(b)
	}

	const key = "LOCKED1"
	unlock, err := recs[0].Lock(key)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range recs {
		if _, err := r.Lock(key); !errors.Is(err, storage.ErrBusy) {
			t.Fatalf("replica %d took a lock replica 0 holds: %v", i, err)
		}
	}
	other, err := recs[1].Lock("OTHER1") // another key is free
	if err != nil {
		t.Fatal(err)
	}
	other()
	unlock()
	unlock, err = recs[1].Lock(key) // released: the other replica takes it at once
	if err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	unlock()

	// Both replicas append the one recording at once.
	data := make([]byte, 11<<20)
	rand.Read(data)
	const chunk = 1 << 20
	rel := storage.Path(key, time.Now(), ".cast")
	var inside atomic.Int32
	var appended [2]int
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for i, r := range recs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(5 * time.Millisecond) // a gateway's retry, shortened
			defer tick.Stop()
			for ; ; <-tick.C {
				unlock, err := r.Lock(key)
				if errors.Is(err, storage.ErrBusy) {
					continue
				}
				if err != nil {
					errs <- err
					return
				}
				if n := inside.Add(1); n != 1 {
					errs <- fmt.Errorf("%d replicas hold the upload lock at once", n)
				}
				held, err := r.PartSize(ctx, key)
				if err == nil && held < int64(len(data)) {
					end := min(held+chunk, int64(len(data)))
					_, err = r.Append(ctx, key, rel, held, bytes.NewReader(data[held:end]), int64(len(data)))
					appended[i]++
				}
				inside.Add(-1)
				unlock()
				if err != nil || held >= int64(len(data)) {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("chunks appended by replica 0: %d, by replica 1: %d", appended[0], appended[1])
	sum := sha256.Sum256(data)
	unlock, err = recs[0].Lock(key)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	if _, err := recs[0].Commit(ctx, key, rel, int64(len(data)), hex.EncodeToString(sum[:])); err != nil {
		t.Fatalf("commit: %v", err)
	}
	f, err := recs[1].Open(ctx, rel)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := io.ReadAll(f)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the bucket holds %d bytes (%v), not the %d appended", len(got), err, len(data))
	}
}
