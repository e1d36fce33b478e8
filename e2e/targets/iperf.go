package targets

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// iperfStartTimeout bounds the wait for iperf3's "Server listening" line.
const iperfStartTimeout = 10 * time.Second

// Iperf3 is a running iperf3 server on 127.0.0.1. It serves one test at a
// time, any number in turn.
type Iperf3 struct {
	Host string
	Port int

	cmd  *exec.Cmd
	done <-chan struct{}
}

// Addr returns host:port.
func (s *Iperf3) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// StartIperf3 starts `iperf3 -s` on a free loopback port and returns once
// it says it listens.
func StartIperf3(ctx context.Context) (*Iperf3, error) {
	bin, err := exec.LookPath("iperf3")
	if err != nil {
		return nil, errors.New("iperf3 not found: apt-get install iperf3")
	}
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s, err := startIperf3(ctx, bin, port)
		if err == nil || attempt == 4 {
			return s, err
		}
	}
}

func startIperf3(ctx context.Context, bin string, port int) (*Iperf3, error) {
	s := &Iperf3{Host: "127.0.0.1", Port: port}
	// --forceflush: the listening line arrives through a pipe at once.
	s.cmd = exec.Command(bin, "-s", "-B", s.Host, "-p", strconv.Itoa(port), "--forceflush")
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	s.cmd.Stderr = s.cmd.Stdout
	if s.done, err = startChild(s.cmd); err != nil {
		return nil, fmt.Errorf("start iperf3: %w", err)
	}
	listening := make(chan struct{})
	go func() {
		// Reads until iperf3 exits; its output is otherwise unused.
		sc := bufio.NewScanner(out)
		for waiting := true; sc.Scan(); {
			if waiting && strings.Contains(sc.Text(), "Server listening on") {
				close(listening)
				waiting = false
			}
		}
		io.Copy(io.Discard, out)
	}()
	wait, cancel := context.WithTimeout(ctx, iperfStartTimeout)
	defer cancel()
	select {
	case <-listening:
		return s, nil
	case <-s.done:
		return nil, errors.New("iperf3 exited before listening (port taken?)")
	case <-wait.Done():
		s.Stop()
		return nil, fmt.Errorf("iperf3 did not listen within %s", iperfStartTimeout)
	}
}

// Stop ends the server and waits for it.
func (s *Iperf3) Stop() error {
	if s.cmd == nil || s.cmd.Process == nil {
		return nil
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	return nil
}

// NewIperf3 starts an iperf3 server for a test and stops it when the test
// ends.
func NewIperf3(t testing.TB) *Iperf3 {
	t.Helper()
	s, err := StartIperf3(context.Background())
	if err != nil {
		t.Fatalf("start iperf3: %v", err)
	}
	t.Cleanup(func() { s.Stop() })
	return s
}

// IperfResult is what an iperf3 client run measured.
type IperfResult struct {
	// BitsPerSecond is what the receiver got, summed over the streams.
	BitsPerSecond float64
	// Retransmits counted by the sender.
	Retransmits int
}

// RunIperf3 runs an iperf3 client against host:port (the server, or a
// tunnel's local end) with streams parallel streams for the given time.
func RunIperf3(ctx context.Context, host string, port, streams int, d time.Duration) (IperfResult, error) {
	secs := max(1, int(d.Round(time.Second)/time.Second))
	cmd := exec.CommandContext(ctx, "iperf3", "-c", host, "-p", strconv.Itoa(port), "-P", strconv.Itoa(streams),
		"-t", strconv.Itoa(secs), "-J")
	out, err := cmd.Output()
	var report struct {
		End struct {
			SumSent struct {
				Retransmits int `json:"retransmits"`
			} `json:"sum_sent"`
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if jerr := json.Unmarshal(out, &report); jerr != nil {
		return IperfResult{}, fmt.Errorf("iperf3 -c %s -p %d: %v; output %q", host, port, errors.Join(err, jerr), out)
	}
	if report.Error != "" || err != nil {
		return IperfResult{}, fmt.Errorf("iperf3 -c %s -p %d: %v %s", host, port, err, report.Error)
	}
	return IperfResult{BitsPerSecond: report.End.SumReceived.BitsPerSecond, Retransmits: report.End.SumSent.Retransmits}, nil
}
