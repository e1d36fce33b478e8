package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/e2e/targets"
	"github.com/keyway-dev/keyway/gateway/spool"
	"github.com/keyway-dev/keyway/gateway/tlsconf"
	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/objstore"
	"github.com/keyway-dev/keyway/portal/store"
	"github.com/keyway-dev/keyway/recordings/asciicast"
)

// cuttingProxy forwards TCP connections to a server and cuts the first
// one that carries more than cutAfter bytes to it, as a gateway's link
// that drops mid-upload.
type cuttingProxy struct {
	*tcpProxy
	cutAfter int64
	cut      atomic.Bool // done once
}

func newCuttingProxy(t *testing.T, target string, cutAfter int64) *cuttingProxy {
	p := &cuttingProxy{cutAfter: cutAfter}
	p.tcpProxy = newTCPProxy(t, func() (net.Conn, error) { return net.Dial("tcp", target) }, p.upstream)
	return p
}

// upstream copies the client's bytes to the server until more than
// cutAfter have gone on the first connection to carry that many.
func (p *cuttingProxy) upstream(c, s net.Conn) {
	defer s.Close()
	defer c.Close()
	buf := make([]byte, 32<<10)
	var sent int64
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := s.Write(buf[:n]); werr != nil {
				return
			}
			sent += int64(n)
			if sent > p.cutAfter && p.cut.CompareAndSwap(false, true) {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// TestRecordingsInS3 runs a portal with --recordings s3://... on a real
// S3-compatible server (versitygw): a gateway's spool uploads a 30 MiB
// terminal recording through a link that drops after 20 MiB; the
// uploader resumes where the portal's multipart upload stopped, the
// recording lands as one object in the bucket, nothing stays in
// incoming/, and an auditor plays it back through the portal.
func TestRecordingsInS3(t *testing.T) {
	ctx := context.Background()
	srv := targets.NewS3(t)
	for _, kv := range srv.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	dir := t.TempDir()
	p, _, _ := startPortalWith(t, serveConfig{DataDir: dir, Listen: "127.0.0.1:0",
		Recordings: "s3://" + srv.Bucket + "/keyway/recs", S3Endpoint: srv.Endpoint, S3PathStyle: true})
	u, _ := url.Parse(p.URL)
	proxy := newCuttingProxy(t, u.Host, 20<<20)
	uploads := embeddedUploadsVia(t, p, dir, "https://"+proxy.ln.Addr().String())

	spoolDir := filepath.Join(t.TempDir(), "spool")
	sp, err := spool.Open(spool.Config{Dir: spoolDir, MinFree: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	rec, err := sp.Create(spool.Meta{SessionID: "S3REC1", User: "alice", Resource: "box", Protocol: "ssh", Gateway: "embedded", Format: spool.Asciicast})
	if err != nil {
		t.Fatal(err)
	}
	w, _ := asciicast.NewWriter(rec, asciicast.Config{Header: asciicast.Header{Width: 80, Height: 24}})
	w.Output([]byte("kw-s3-upload-marker\r\n"))
	line := []byte(strings.Repeat("0123456789abcdef", 63) + "\r\n")
	for i := range 30 << 10 { // 30 MiB of output, each line numbered
		copy(line, strconv.Itoa(i))
		w.Output(line)
	}
	w.Close()
	if _, err := rec.Finish(); err != nil {
		t.Fatal(err)
	}
	metas, _ := sp.List()
	if len(metas) != 1 {
		t.Fatalf("spool holds %+v", metas)
	}
	want, err := os.ReadFile(filepath.Join(spoolDir, "S3REC1.cast"))
	if err != nil {
		t.Fatal(err)
	}

	uctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		spool.NewUploader(sp, uploads, spool.UploaderConfig{MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}).Run(uctx)
	}()
	defer func() { cancel(); <-done }()
	var stored store.Recording
	var evs []store.AuditEvent
	// The upload is audited after the recording is stored.
	waitForLong(t, "the portal to store the recording", func() bool {
		evs, _ = p.Store.SearchAudit(ctx, store.AuditFilter{Action: audit.ActionRecordingUpload, Outcome: audit.OutcomeSuccess})
		return len(evs) > 0
	})
	if stored, err = p.Store.RecordingBySession(ctx, "S3REC1"); err != nil || len(evs) != 1 {
		t.Fatalf("stored %+v, %v; upload events %+v", stored, err, evs)
	}
	t.Logf("resumed at byte %s of %d", evs[0].Details["resumed_at"], stored.Size)
	if !proxy.cut.Load() {
		t.Fatal("the link was never cut: the test did not test a resume")
	}
	resumed, _ := strconv.ParseInt(evs[0].Details["resumed_at"], 10, 64)
	if resumed < objstore.DefaultPartSize || resumed >= stored.Size {
		t.Fatalf("resumed at byte %d of %d: want after at least one %d-byte part", resumed, stored.Size, objstore.DefaultPartSize)
	}
	keys, err := srv.Keys(ctx, "keyway/recs/")
	if err != nil || !slices.Equal(keys, []string{"keyway/recs/" + stored.Path}) {
		t.Fatalf("bucket holds %v, %v; want only keyway/recs/%s", keys, err, stored.Path)
	}
	if _, err := os.Stat(filepath.Join(dir, "recordings")); !os.IsNotExist(err) {
		t.Fatalf("the data directory has recordings: %v", err)
	}

	// An auditor plays it back through the portal, from the bucket.
	hash := mustHash(t, "auditor-password-1")
	if _, err := p.Store.CreateUser(ctx, store.User{Name: "aud", Role: store.RoleAuditor}, hash); err != nil {
		t.Fatal(err)
	}
	aud := newBrowser(t, p.URL)
	aud.signIn("aud", "auditor-password-1")
	code, body := aud.get(fmt.Sprintf("/recordings/%d/file", stored.ID))
	if code != 200 || !bytes.Equal([]byte(body), want) {
		t.Fatalf("playback: %d, %d bytes; want the spool's %d", code, len(body), len(want))
	}
	if hits, _ := p.Store.SearchRecordings(ctx, store.RecordingFilter{Text: "kw-s3-upload-marker"}); len(hits) != 1 {
		t.Fatalf("the recording is not searchable: %d hits", len(hits))
	}

	// Readiness writes to the bucket; without the server the portal is
	// not ready, and says which store failed.
	if code, body := get(t, p.MetricsURL+"/readyz"); !strings.Contains(body, `"recordings":"ok"`) {
		t.Fatalf("readyz with the bucket: %d %s", code, body)
	}
	srv.Stop()
	checkNotReady(t, http.DefaultClient, p.MetricsURL, "recordings", "s3://"+srv.Bucket+"/keyway/recs")
}

// waitForLong is waitFor with room for a 30 MiB upload on a loaded
// machine.
func waitForLong(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitWithin(t, 2*time.Minute, what, cond, nil)
}

// TestRecordingsFlags: a recordings location or S3 setting the portal
// cannot use stops it at start, saying which flag and why.
func TestRecordingsFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  serveConfig
		want string
	}{
		{"not s3", serveConfig{Recordings: "/srv/recordings"}, "--recordings"},
		{"no bucket", serveConfig{Recordings: "s3:///x"}, "want s3://BUCKET"},
		{"dot segment", serveConfig{Recordings: "s3://b/a/../c"}, "segments"},
		{"endpoint scheme", serveConfig{Recordings: "s3://b", S3Endpoint: "ftp://x"}, "--s3-endpoint"},
		{"endpoint without host", serveConfig{Recordings: "s3://b", S3Endpoint: "https://"}, "--s3-endpoint"},
		{"s3 flags without s3", serveConfig{S3Endpoint: "https://s3.example"}, "not set"},
		{"path style without s3", serveConfig{S3PathStyle: true}, "not set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.DataDir = t.TempDir()
			_, err := tc.cfg.openRecordings(context.Background(), tlsconf.Default(), slog.New(slog.DiscardHandler))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%+v: %v, want an error with %q", tc.cfg, err, tc.want)
			}
		})
	}
	t.Setenv("KEYWAY_S3_PATH_STYLE", "yes please")
	cfg := serveConfig{DataDir: t.TempDir()}
	if _, err := cfg.openRecordings(context.Background(), tlsconf.Default(), slog.New(slog.DiscardHandler)); err == nil ||
		!strings.Contains(err.Error(), "KEYWAY_S3_PATH_STYLE") {
		t.Fatalf("invalid KEYWAY_S3_PATH_STYLE: %v", err)
	}
}
