// Command samlidp runs a SAML 2.0 identity provider (crewjam/saml's, through
// portal/identity/saml/samltest) on loopback for the end-to-end tests,
// which are JavaScript and cannot start it themselves. It listens on a
// random port, prints one JSON line with its metadata URL once it serves,
// and stops when its standard input closes (its parent test ended) or on
// SIGTERM. Users sign in at its login form.
//
//	go run ./e2e/idp/samlidp -sp-metadata-url https://127.0.0.1:8443/saml/corp/metadata \
//		-user 'alice:pw:alice@example.com:Alice Liddell:ops-team,dev'
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/keyway-dev/keyway/portal/identity/saml/samltest"
)

// users is the repeatable -user flag.
type users []samltest.User

func (u *users) String() string { return fmt.Sprint(len(*u), " users") }

// Set reads name:password:email:display name:group,group.
func (u *users) Set(v string) error {
	f := strings.SplitN(v, ":", 5)
	if len(f) < 2 || f[0] == "" || f[1] == "" {
		return fmt.Errorf("want name:password[:email[:display name[:group,group]]], got %q", v)
	}
	for len(f) < 5 {
		f = append(f, "")
	}
	var groups []string
	if f[4] != "" {
		groups = strings.Split(f[4], ",")
	}
	*u = append(*u, samltest.User{Name: f[0], Password: f[1], Email: f[2], DisplayName: f[3], Groups: groups})
	return nil
}

func main() {
	var us users
	addr := flag.String("addr", "127.0.0.1:0", "address to listen on")
	sp := flag.String("sp-metadata-url", "", "the SP's metadata URL (its entity id), fetched when it first sends a user")
	flag.Var(&us, "user", "a user, name:password:email:display name:group,group (repeatable)")
	flag.Parse()
	if err := run(*addr, *sp, us); err != nil {
		fmt.Fprintln(os.Stderr, "samlidp:", err)
		os.Exit(1)
	}
}

func run(addr, sp string, us users) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	idp, err := samltest.New(addr)
	if err != nil {
		return err
	}
	defer idp.Close()
	for _, u := range us {
		idp.SetUser(u)
	}
	if sp != "" {
		idp.FetchSPFrom(sp)
	}
	if err := json.NewEncoder(os.Stdout).Encode(map[string]string{"url": idp.URL, "metadata_url": idp.MetadataURL}); err != nil {
		return err
	}
	// The parent holds our standard input: its end is ours.
	go func() {
		io.Copy(io.Discard, os.Stdin)
		stop()
	}()
	<-ctx.Done()
	return nil
}
