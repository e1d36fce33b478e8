package bench

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/e2e/targets"
	"github.com/keyway-dev/keyway/gateway"
	"github.com/keyway-dev/keyway/gateway/spool"
	"github.com/keyway-dev/keyway/gateway/wire"
	"github.com/keyway-dev/keyway/portal/gateways"
)

// BenchmarkRecordingOverhead measures what recording costs a terminal: the
// same gateway serves `cat` of the 100 MB file in sessions recorded into
// its spool (asciicast, flushed and fsynced every second) and not recorded,
// alternately in one run, and reports both throughputs, their ratio, and
// the recording's size per byte of terminal output.
func BenchmarkRecordingOverhead(b *testing.B) {
	sshd := targets.NewSSHD(b)
	path := bulkFile(b)
	portal := newIdentity(b)
	dir := filepath.Join(b.TempDir(), "spool")
	sp, err := spool.Open(spool.Config{Dir: dir, MinFree: 1, Fsync: true, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer sp.Close()
	gwID := newIdentity(b)
	g, err := gateway.New(gateway.Config{
		SSHAddr: "127.0.0.1:0", ManagementAddr: "127.0.0.1:0", Identity: gwID, ID: "rec", Version: "bench", Spool: sp,
		TrustedPortal: func(k ed25519.PublicKey) bool { return k.Equal(portal.PublicKey()) },
		Logger:        quietLogger(),
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := g.Start(); err != nil {
		b.Fatal(err)
	}
	defer g.Close()
	pool := gateways.New(portal, quietLogger(), 30*time.Second)
	defer pool.Close()
	gw := gateways.Gateway{ID: "rec", Name: "rec", Segment: "seg", SSHAddr: g.Addr().String(),
		ManagementAddr: g.ManagementAddr().String(), Key: gwID.PublicKey()}
	pool.Set([]gateways.Gateway{gw})
	pool.CheckAll(context.Background(), gateways.DefaultHealth)

	var bulk [2]time.Duration // 0 unrecorded, 1 recorded
	var castBytes int64
	for i := range b.N {
		for k, rec := range []*wire.Recording{nil, {}} {
			id := fmt.Sprintf("bench-%d-%d", i, k)
			c, resp, err := pool.Open(context.Background(), gw, &wire.Request{
				Kind: wire.KindSession, Protocol: wire.ProtocolSSH, SessionID: id, User: "bench", Resource: "bench",
				Target:      wire.Target{Host: sshd.Host, Port: sshd.Port},
				Credentials: wire.Credentials{Username: sshd.User, Password: wire.Secret(sshd.Password)},
				HostKey:     sshd.HostKey, Terminal: &wire.Terminal{Term: "xterm", Cols: 200, Rows: 50},
				Recording: rec,
			})
			if err != nil {
				b.Fatalf("open session: %v (%+v)", err, resp)
			}
			bulk[k] += catThrough(b, c, path)
			c.Close()
			if rec != nil {
				castBytes += waitRecording(b, sp, id)
				os.Remove(filepath.Join(dir, id+".cast"))
				os.Remove(filepath.Join(dir, id+".json"))
			}
		}
	}
	n := float64(b.N)
	b.ReportMetric(float64(bulkSize)/1e6*n/bulk[0].Seconds(), "unrecorded-MB/s")
	b.ReportMetric(float64(bulkSize)/1e6*n/bulk[1].Seconds(), "recorded-MB/s")
	b.ReportMetric(bulk[0].Seconds()/bulk[1].Seconds(), "recorded/unrecorded-throughput")
	b.ReportMetric(float64(castBytes)/n/float64(bulkSize), "cast-bytes/output-byte")
}

// waitRecording waits for the recording of session id to be finished in
// the spool and returns its size.
func waitRecording(b *testing.B, sp *spool.Spool, id string) int64 {
	deadline := time.After(30 * time.Second)
	for {
		metas, err := sp.List()
		if err != nil {
			b.Fatal(err)
		}
		for _, m := range metas {
			if m.SessionID == id && m.Finished() {
				return m.Size
			}
		}
		select {
		case <-sp.Finished():
		case <-deadline:
			b.Fatalf("recording %s never finished", id)
		}
	}
}
