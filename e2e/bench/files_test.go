package bench

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// transferSize is the file moved each way per iteration.
const transferSize = 1 << 30

// transferFile is a 1 GiB local file of pseudo-random bytes (incompressible,
// as most large files are), made once and kept between runs.
func transferFile(b *testing.B) string {
	path := filepath.Join(os.TempDir(), "keyway-bench-1G.bin")
	if fi, err := os.Stat(path); err == nil && fi.Size() == transferSize {
		return path
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	_, err = io.Copy(f, io.LimitReader(mrand.NewChaCha8([32]byte{42}), transferSize))
	if err := errors.Join(err, f.Chmod(0o644), f.Close()); err != nil {
		b.Fatal(err)
	}
	return path
}

// filesClient signs in as a browser does (HTTP/2) and returns the client
// and the demo resource's file browser path, /files/{id}.
func filesClient(b *testing.B, info demoInfo) (*http.Client, string) {
	b.Helper()
	jar, _ := cookiejar.New(nil)
	// The demo portal has a self-signed certificate on loopback.
	c := &http.Client{Jar: jar, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}}
	resp, err := c.PostForm(info.URL+"/signin", url.Values{"username": {info.User.Name}, "password": {info.User.Password}})
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	resp, err = c.Get(info.URL + "/")
	if err != nil {
		b.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`href="(/files/\d+)"`).FindSubmatch(page)
	if m == nil || resp.ProtoMajor != 2 {
		b.Fatalf("no Files link on the home page (status %d, %s)", resp.StatusCode, resp.Proto)
	}
	return c, info.URL + string(m[1])
}

// directSFTP runs OpenSSH's sftp client straight to the target with the
// given commands (its default settings: 64 requests in flight, the
// server's largest read and write length).
func directSFTP(b *testing.B, info demoInfo, commands string) {
	b.Helper()
	t := info.Target
	cmd := exec.Command("sshpass", "-p", t.Password, "sftp", "-q",
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
		"-P", fmt.Sprint(t.Port), t.Login+"@"+t.Host)
	cmd.Stdin = strings.NewReader(commands + "\nbye\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("sftp (apt-get install openssh-client sshpass): %v\n%s", err, out)
	}
}

// peakRSS samples a process's resident memory until stop is called, and
// returns the largest sample in MB.
func peakRSS(b *testing.B, pid int) (stop func() float64) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	var peak float64
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			peak = max(peak, rssMB(b, pid))
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() float64 { close(done); wg.Wait(); return peak }
}

// BenchmarkFileTransfer moves a 1 GiB file up and down through the file
// browser (HTTP/2 → portal → gateway → sshd's internal-sftp) and with
// OpenSSH's sftp client straight to the same sshd, in turn, and reports
// both throughputs, their ratios and the portal's peak memory.
func BenchmarkFileTransfer(b *testing.B) {
	info, pid := startDemoProcess(b)
	client, filesURL := filesClient(b, info)
	local := transferFile(b)
	home := "/home/" + info.Target.Login
	var portalUp, portalDown, sftpUp, sftpDown time.Duration
	idle := rssMB(b, pid)
	var peak float64
	b.ResetTimer()
	for range b.N {
		// Upload: the browser's raw body, streamed from disk.
		f, err := os.Open(local)
		if err != nil {
			b.Fatal(err)
		}
		q := url.Values{"path": {home}, "name": {"keyway-bench-portal.bin"}, "replace": {"1"}}
		req, _ := http.NewRequest(http.MethodPost, filesURL+"/upload?"+q.Encode(), bufio.NewReaderSize(f, 1<<20))
		req.ContentLength = transferSize
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set("Accept", "application/json")
		stopRSS := peakRSS(b, pid)
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		portalUp += time.Since(start)
		f.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("upload: %d %s", resp.StatusCode, body)
		}

		start = time.Now()
		directSFTP(b, info, fmt.Sprintf("put %s keyway-bench-sftp.bin", local))
		sftpUp += time.Since(start)

		start = time.Now()
		resp, err = client.Get(filesURL + "/download?" + url.Values{"path": {home + "/keyway-bench-portal.bin"}}.Encode())
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		portalDown += time.Since(start)
		peak = max(peak, stopRSS())
		if err != nil || n != transferSize {
			b.Fatalf("download: %d bytes, %v", n, err)
		}

		start = time.Now()
		directSFTP(b, info, "get keyway-bench-sftp.bin /dev/null")
		sftpDown += time.Since(start)
	}
	b.StopTimer()
	directSFTP(b, info, "rm keyway-bench-portal.bin\nrm keyway-bench-sftp.bin")
	mb := float64(transferSize) / 1e6 * float64(b.N)
	b.ReportMetric(mb/portalUp.Seconds(), "portal-up-MB/s")
	b.ReportMetric(mb/sftpUp.Seconds(), "sftp-up-MB/s")
	b.ReportMetric(sftpUp.Seconds()/portalUp.Seconds(), "portal/sftp-up")
	b.ReportMetric(mb/portalDown.Seconds(), "portal-down-MB/s")
	b.ReportMetric(mb/sftpDown.Seconds(), "sftp-down-MB/s")
	b.ReportMetric(sftpDown.Seconds()/portalDown.Seconds(), "portal/sftp-down")
	b.ReportMetric(idle, "portal-idle-RSS-MB")
	b.ReportMetric(peak, "portal-peak-RSS-MB")
}
