package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestFlagDefaults checks what -h shows: the demo keeps its data in
// ./data-demo (as README says) and, since it prints passwords, listens on
// loopback only; serve keeps ./data and every interface.
func TestFlagDefaults(t *testing.T) {
	t.Setenv("KEYWAY_DATA", "")
	t.Setenv("KEYWAY_LISTEN", "")
	for _, tc := range []struct {
		cmd  string
		want []string
	}{
		{"demo", []string{`(default "./data-demo")`, `(default "127.0.0.1:8443")`}},
		{"serve", []string{`(default "./data")`, `(default ":8443")`}},
	} {
		var stderr bytes.Buffer
		if err := run(context.Background(), []string{tc.cmd, "-h"}, nil, &stderr, &stderr); !errors.Is(err, errUsage) {
			t.Errorf("portal %s -h: %v", tc.cmd, err)
		}
		for _, w := range tc.want {
			if !strings.Contains(stderr.String(), w) {
				t.Errorf("portal %s -h does not show %s:\n%s", tc.cmd, w, stderr.String())
			}
		}
	}
}

// TestDemoRelativeDataDir runs the demo as `make demo` does, with a data
// directory relative to the working directory: every server must start
// (freerdp-shadow-cli refuses a relative configuration directory).
func TestDemoRelativeDataDir(t *testing.T) {
	t.Chdir(t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var log syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- demo(ctx, []string{"--data", "rel-data", "--listen", "127.0.0.1:0", "--gateway-listen", "127.0.0.1:0",
			"--gateway-rdp-listen", "127.0.0.1:0", "--gateway-vnc-listen", "127.0.0.1:0"}, &log, &log)
	}()
	waitFor(t, "demo.json", func() bool {
		select {
		case err := <-done:
			done <- err
			return true
		default:
		}
		_, err := os.Stat(filepath.Join("rel-data", "demo.json"))
		return err == nil
	}, log.String)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("portal demo with --data rel-data: %v\n%s", err, log.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("portal demo did not stop within 30 s")
	}
	abs, _ := filepath.Abs("rel-data")
	if !strings.Contains(log.String(), "data="+abs) {
		t.Errorf("the log does not name the absolute data directory %s:\n%s", abs, log.String())
	}
}

// TestServeLogsAddresses checks that the log says where the portal can
// be reached.
func TestServeLogsAddresses(t *testing.T) {
	t.Parallel()
	p, log := startPortal(t, t.TempDir())
	want := "127.0.0.1:" + strings.TrimPrefix(p.URL, "https://localhost:")
	if !slices.Equal(p.Addresses, []string{want}) || !strings.Contains(log.String(), "addresses="+want) {
		t.Errorf("addresses %v, want %s; log:\n%s", p.Addresses, want, log.String())
	}
}

// TestListenAddresses lists a wildcard listener's addresses without
// binding one (tests listen on loopback only).
func TestListenAddresses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		addr     *net.TCPAddr
		want     string // must be listed
		noIPv6   bool
		onlyWant bool
	}{
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8443}, "127.0.0.1:8443", true, true},
		{&net.TCPAddr{IP: net.IPv6loopback, Port: 8443}, "[::1]:8443", false, true},
		{&net.TCPAddr{IP: net.IPv4zero, Port: 8443}, "127.0.0.1:8443", true, false},
		{&net.TCPAddr{IP: net.IPv6unspecified, Port: 8443}, "127.0.0.1:8443", false, false},
	} {
		got := listenAddresses(tc.addr)
		if !slices.Contains(got, tc.want) || (tc.onlyWant && len(got) != 1) {
			t.Errorf("listenAddresses(%s) = %v, want %s listed", tc.addr, got, tc.want)
		}
		for _, a := range got {
			if tc.noIPv6 && strings.HasPrefix(a, "[") {
				t.Errorf("listenAddresses(%s) lists IPv6 address %s", tc.addr, a)
			}
		}
	}
}

// TestListenInUse checks that a taken port is explained in words, as
// when a second `make demo` starts beside a first.
func TestListenInUse(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cfg := serveConfig{DataDir: t.TempDir(), Listen: taken.Addr().String(), GatewayListen: "127.0.0.1:0", LogLevel: "error"}
	err = serveWith(context.Background(), cfg, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "another program (another portal?) uses this port") {
		t.Errorf("serve on a taken port: %v", err)
	}
}
