// Command oidcop is a small OpenID provider for Keyway's tests (see
// package opserver). It listens on loopback, prints its issuer URL on
// stdout once it answers, and serves until interrupted or its standard
// input ends.
//
//	oidcop -users users.json -client-id keyway -client-secret s \
//	    -redirect-uri https://127.0.0.1:8443/signin/oidc/corp/callback \
//	    -post-logout-redirect-uri https://127.0.0.1:8443/signin
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/keyway-dev/keyway/e2e/idp/oidcop/opserver"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "oidcop:", err)
		os.Exit(1)
	}
}

func run() error {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on (port 0: any free port)")
	users := flag.String("users", "", "JSON file of users (re-read at every sign-in)")
	clientID := flag.String("client-id", "keyway", "the one client's id")
	secret := flag.String("client-secret", "", "the client's secret")
	redirects := flag.String("redirect-uri", "", "the client's redirect URIs, comma-separated")
	logouts := flag.String("post-logout-redirect-uri", "", "where the client may send users after logout, comma-separated")
	groups := flag.String("groups-claim", "groups", "the claim carrying groups")
	flag.Parse()
	if *users == "" || *secret == "" || *redirects == "" {
		return errors.New("-users, -client-secret and -redirect-uri are required")
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	issuer := "http://" + ln.Addr().String()
	srv, err := opserver.New(opserver.Config{Issuer: issuer, UsersFile: *users, ClientID: *clientID, ClientSecret: *secret,
		RedirectURIs: split(*redirects), PostLogoutRedirects: split(*logouts), GroupsClaim: *groups})
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	// The parent holds our standard input: its end is ours too. (A SIGTERM
	// to `go run` does not reach this program, which would outlive it.)
	go func() {
		io.Copy(io.Discard, os.Stdin)
		stop()
	}()
	fmt.Println(issuer) // the listener is open: requests queue until Serve takes them
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		slog.Info("oidcop: stopping")
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return hs.Shutdown(sctx)
	}
}

func split(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
