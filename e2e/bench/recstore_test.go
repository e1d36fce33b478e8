package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/e2e/targets"
	"github.com/keyway-dev/keyway/portal/objstore"
	"github.com/keyway-dev/keyway/recordings/guacrec"
	"github.com/keyway-dev/keyway/recordings/guacseek"
	"github.com/keyway-dev/keyway/recordings/storage"
)

// synthHour returns the paths of a one-hour desktop recording and its
// index written by synthrec: from BENCH_SYNTH_DIR (a spool it wrote), or
// written now (a minute or two).
func synthHour(b *testing.B) (rec, index string) {
	b.Helper()
	dir := os.Getenv("BENCH_SYNTH_DIR")
	if dir == "" {
		dir = filepath.Join(b.TempDir(), "spool")
		cmd := exec.Command("go", "run", "./e2e/bench/synthrec", "-spool", dir, "-session", "synthetic-hour", "-minutes", "60")
		cmd.Dir = moduleRoot(b)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("synthrec: %v\n%s", err, out)
		}
	}
	return filepath.Join(dir, "synthetic-hour.guac"), filepath.Join(dir, "synthetic-hour.idx")
}

func moduleRoot(b *testing.B) string {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		b.Fatal(err)
	}
	return filepath.Dir(string(bytes.TrimSpace(out)))
}

// BenchmarkRecordingStore compares the recordings directory with an S3
// bucket (versitygw on loopback, posix backend on the same disk) for a
// one-hour desktop recording from synthrec: the portal's side of the
// upload (Append of the whole file, Commit with its SHA-256 check, the
// index), and the portal's side of a seek as the player asks for it
// (file?keyframe=N&until=N+1&at=T: the index, the first frame's time,
// the screen drawn at T from its key frame, and the frames to the next
// key frame). Seeks are to the same points as the browser benchmark in
// docs/benchmarks.md.
//
//	go test -run '^$' -bench RecordingStore -benchtime 1x ./e2e/bench/
func BenchmarkRecordingStore(b *testing.B) {
	recPath, indexPath := synthHour(b)
	data, err := os.ReadFile(recPath)
	if err != nil {
		b.Fatal(err)
	}
	index, err := os.ReadFile(indexPath)
	if err != nil {
		b.Fatal(err)
	}
	sum := sha256.Sum256(data)
	srv := targets.NewS3(b)
	ctx := context.Background()
	dir, err := storage.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	var counted targets.ByteCounter // bytes fetched from S3
	bucket, err := objstore.New(ctx, objstore.Config{Bucket: srv.Bucket, Prefix: "bench", Endpoint: srv.Endpoint,
		Region: srv.Region, PathStyle: true, Credentials: srv.Credentials(), HTTPClient: counted.Client()})
	if err != nil {
		b.Fatal(err)
	}
	minutes := []float64{55.0, 30.1, 10.1, 58.3, 5.2, 42.0}
	for b.Loop() {
		for _, be := range []struct {
			name  string
			store storage.Store
		}{{"dir", dir}, {"s3", bucket}} {
			key := "hour" + strconv.Itoa(int(time.Now().UnixNano()%1e9))
			rel := storage.Path(key, time.Now(), ".guac")
			start := time.Now()
			if err := be.store.PutIndex(ctx, key, bytes.NewReader(index)); err != nil {
				b.Fatal(err)
			}
			if _, err := be.store.Append(ctx, key, rel, 0, bytes.NewReader(data), int64(len(data))); err != nil {
				b.Fatal(err)
			}
			if _, err := be.store.Commit(ctx, key, rel, int64(len(data)), hex.EncodeToString(sum[:])); err != nil {
				b.Fatal(err)
			}
			if _, err := be.store.CommitIndex(ctx, key, rel, int64(len(data))); err != nil {
				b.Fatal(err)
			}
			up := time.Since(start)
			mbps := float64(len(data)) / 1e6 / up.Seconds()
			b.ReportMetric(mbps, be.name+"-upload-MB/s")
			var seeks []float64
			counted.Reset()
			for _, m := range minutes {
				t0 := time.Now()
				seek(b, be.store, rel, int64(len(data)), int64(m*60000))
				seeks = append(seeks, float64(time.Since(t0).Microseconds())/1000)
			}
			sorted := slices.Clone(seeks)
			slices.Sort(sorted)
			b.ReportMetric(sorted[len(sorted)/2], be.name+"-seek-median-ms")
			b.Logf("%s: upload of %.1f MB in %s (%.0f MB/s); seeks to %v min: %v ms", be.name, float64(len(data))/1e6,
				up.Round(time.Millisecond), mbps, minutes, seeks)
			if be.name == "s3" {
				b.ReportMetric(float64(counted.Bytes())/float64(len(minutes))/1e6, "s3-MB-fetched/seek")
			}
			if err := be.store.Remove(ctx, rel); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// seek does the portal's part of a seek to at ms after the first frame,
// as httpui's serveFromKeyFrame does for file?keyframe=N&until=N+1&at=.
func seek(b *testing.B, st storage.Store, rel string, size, at int64) {
	ctx := context.Background()
	ix, err := st.Index(ctx, rel)
	if err != nil || len(ix) < 2 {
		b.Fatalf("index: %d key frames, %v", len(ix), err)
	}
	f, err := st.Open(ctx, rel)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	first := firstSync(b, io.NewSectionReader(f, 0, size))
	n := 0 // the last key frame at or before at
	for i, kf := range ix {
		if kf.Timestamp-first <= at {
			n = i + 1
		}
	}
	from, end := guacrec.KeyFrame{}, size
	if n > 0 {
		from = ix[n-1]
	}
	if n < len(ix) {
		end = ix[n].Offset
	}
	if _, err := guacrec.Stream(f, size, from); err != nil {
		b.Fatal(err)
	}
	src := io.NewSectionReader(f, from.Offset, end-from.Offset)
	body, _, err := guacseek.From(src, src.Size(), first+at)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, body); err != nil {
		b.Fatal(err)
	}
}

// firstSync returns the time of a recording's first frame.
func firstSync(b *testing.B, r io.Reader) int64 {
	rd := guacrec.NewReader(r, guacrec.RecordingLimits)
	for {
		in, err := rd.Next()
		if err != nil {
			b.Fatalf("no first frame: %v", err)
		}
		if in.Opcode == "sync" && len(in.Args) > 0 {
			ts, err := strconv.ParseInt(in.Args[0], 10, 64)
			if err == nil {
				return ts
			}
		}
	}
}
