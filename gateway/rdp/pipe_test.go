package rdp

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestNotAnRDPServer points FreeRDP at a server that talks SSH, so that it
// fails negotiation and falls back to other security protocols on new
// connections, while other goroutines of the process open, use and close
// sockets all the time. None of their sockets may be touched: FreeRDP once
// reconnected with a descriptor number it had closed and Go had reused.
func TestNotAnRDPServer(t *testing.T) {
	var attempts atomic.Int32
	ssh := listen(t, func(c net.Conn) {
		attempts.Add(1)
		io.WriteString(c, "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		c.Read(make([]byte, 256))
		io.WriteString(c, "Invalid SSH identification string.\r\n")
	})
	echo := listen(t, func(c net.Conn) { io.Copy(c, c) })

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var churnMu sync.Mutex
	var churnErr error
	var rounds atomic.Int64
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				if err := echoRound(echo); err != nil {
					churnMu.Lock()
					churnErr = cmp.Or(churnErr, err)
					churnMu.Unlock()
					return
				}
				rounds.Add(1)
			}
		})
	}
	// A connection kept open all along must keep working too.
	kept, err := net.Dial("tcp", echo)
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Close()

	for i := range 5 {
		_, err := Connect(context.Background(), Config{Host: "127.0.0.1", Port: portOf(t, ssh), IgnoreCertificate: true})
		var e *Error
		if !errors.As(err, &e) || !errors.Is(err, ErrNegotiation) && !errors.Is(err, ErrServerClosed) {
			t.Errorf("connect %d to an SSH server: %v (want a negotiation failure)", i, err)
		}
		if i == 0 {
			t.Log(err)
		}
		if err := roundTrip(kept, fmt.Sprintf("kept %d", i)); err != nil {
			t.Fatalf("a connection open during connect %d: %v", i, err)
		}
	}
	cancel()
	wg.Wait()
	if churnErr != nil {
		t.Fatalf("a socket of the process was disturbed: %v", churnErr)
	}
	if rounds.Load() == 0 {
		t.Fatal("the churn made no round trip")
	}
	if n := attempts.Load(); n < 5 || n > 5*maxServerConnections {
		t.Errorf("the server saw %d connections for 5 attempts", n)
	}
}

// listen serves each connection with serve on a loopback port until the
// test ends; it returns the address.
func listen(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		var conns sync.WaitGroup
		defer conns.Wait()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Go(func() { defer c.Close(); serve(c) })
		}
	})
	return ln.Addr().String()
}

func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	fmt.Sscan(port, &n)
	return n
}

// echoRound dials the echo server, checks one round trip and closes.
func echoRound(addr string) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	return roundTrip(c, "churn")
}

func roundTrip(c net.Conn, msg string) error {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, msg); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if !bytes.Equal(got, []byte(msg)) {
		return fmt.Errorf("read %q, wrote %q", got, msg)
	}
	return nil
}
