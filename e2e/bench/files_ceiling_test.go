package bench

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// goSFTP opens pkg/sftp over x/crypto/ssh straight to the demo's target,
// set up as the portal sets up its client: 64 requests in flight of 255
// KiB each.
func goSFTP(b *testing.B, info demoInfo) *sftp.Client {
	b.Helper()
	t := info.Target
	c, err := ssh.Dial("tcp", net.JoinHostPort(t.Host, strconv.Itoa(t.Port)), &ssh.ClientConfig{
		User: t.Login, Auth: []ssh.AuthMethod{ssh.Password(t.Password)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), // the demo's own sshd on loopback
	})
	if err != nil {
		b.Fatal(err)
	}
	s, err := sftp.NewClient(c, sftp.UseConcurrentReads(true), sftp.UseConcurrentWrites(true),
		sftp.MaxConcurrentRequestsPerFile(64))
	if err != nil {
		b.Fatal(err)
	}
	if err := sftp.MaxPacketUnchecked(255 << 10)(s); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close(); c.Close() })
	return s
}

// BenchmarkFileTransferCeiling splits a 1 GiB download into what its parts
// cost, each run in turn in the same iteration: OpenSSH's sftp; the Go
// SSH and SFTP stack the gateway and portal use, alone; the least any
// portal could do (that stack behind one HTTPS handler, HTTP/2 as browsers
// speak it, with no gateway and no mutual TLS hop); and the portal. The
// ratios to sftp say how much of the gap the design's hops could close at
// best on this machine:
//
//	make build && go test -run '^$' -bench FileTransferCeiling -benchtime 2x ./e2e/bench/
func BenchmarkFileTransferCeiling(b *testing.B) {
	info := startDemo(b)
	client, filesURL := filesClient(b, info)
	local := transferFile(b)
	remote := "/home/" + info.Target.Login + "/keyway-bench-ceiling.bin"
	directSFTP(b, info, fmt.Sprintf("put %s %s", local, remote))
	b.Cleanup(func() { directSFTP(b, info, "rm "+remote) })
	s := goSFTP(b, info)

	least := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, err := s.Open(remote)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer f.Close()
		w.Header().Set("Content-Length", strconv.Itoa(transferSize))
		f.WriteTo(w)
	}))
	least.EnableHTTP2 = true
	least.StartTLS()
	defer least.Close()
	leastClient := least.Client()

	get := func(c *http.Client, u string) time.Duration {
		start := time.Now()
		resp, err := c.Get(u)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || n != transferSize || resp.ProtoMajor != 2 {
			b.Fatalf("%s: %d bytes over %s, %v", u, n, resp.Proto, err)
		}
		return time.Since(start)
	}
	var sftpT, goT, leastT, portalT time.Duration
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		directSFTP(b, info, "get "+remote+" /dev/null")
		sftpT += time.Since(start)

		start = time.Now()
		f, err := s.Open(remote)
		if err != nil {
			b.Fatal(err)
		}
		if n, err := f.WriteTo(io.Discard); err != nil || n != transferSize {
			b.Fatalf("Go SFTP: %d bytes, %v", n, err)
		}
		f.Close()
		goT += time.Since(start)

		leastT += get(leastClient, least.URL)
		portalT += get(client, filesURL+"/download?"+url.Values{"path": {remote}}.Encode())
	}
	b.StopTimer()
	mb := float64(transferSize) / 1e6 * float64(b.N)
	b.ReportMetric(mb/sftpT.Seconds(), "sftp-MB/s")
	b.ReportMetric(sftpT.Seconds()/goT.Seconds(), "go-sftp/sftp")
	b.ReportMetric(sftpT.Seconds()/leastT.Seconds(), "least-portal/sftp")
	b.ReportMetric(sftpT.Seconds()/portalT.Seconds(), "portal/sftp")
}
