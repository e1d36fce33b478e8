// Command xrdptarget runs xrdp (package targets) for the end-to-end tests,
// which are JavaScript and cannot start it themselves. It prints one JSON
// line with the address and sign-in, then, once a client has signed in,
// one with the session's X display, and stops xrdp when its standard
// input closes (its parent test ended) or on SIGTERM.
//
//	go run ./e2e/xrdptarget -dir /tmp/x
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/keyway-dev/keyway/e2e/targets"
)

func main() {
	dir := flag.String("dir", "", "directory for xrdp's configuration and logs (required)")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "xrdptarget: -dir is required")
		os.Exit(2)
	}
	if err := run(*dir); err != nil {
		fmt.Fprintln(os.Stderr, "xrdptarget:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	x, err := targets.StartXRDP(ctx, dir, targets.XRDPOptions{})
	if err != nil {
		return err
	}
	defer x.Stop()
	out := json.NewEncoder(os.Stdout)
	if err := out.Encode(map[string]any{"host": x.Host, "port": x.Port, "user": x.User, "password": x.Password}); err != nil {
		return err
	}
	// The parent holds our standard input: its end is ours.
	go func() {
		io.Copy(io.Discard, os.Stdin)
		stop()
	}()
	d, err := x.Session(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	// X clients on the display need its environment (XAUTHORITY).
	if err := out.Encode(map[string]any{"display": d.Number, "env": d.Env()}); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}
