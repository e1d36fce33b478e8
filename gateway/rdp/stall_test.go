package rdp

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

// A server that accepts and then says nothing must not hold Connect past
// its context.
func TestConnectDeadlineOnSilentServer(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	defer func() {
		ln.Close()
		for c := range accepted {
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	_, err = Connect(ctx, Config{Host: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port, IgnoreCertificate: true})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("silent server: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Connect returned %s after its deadline", d-2*time.Second)
	}
	t.Log(err, time.Since(start))
}
