// Command ldapdir runs the test LDAP directory (slapd with users, groups
// and a nested group, package targets) for the end-to-end tests, which are
// JavaScript and cannot start it themselves. It prints one JSON line with
// the URLs (ldap:// with StartTLS, ldaps://), the test CA, the bases, the
// service account and the users, and stops slapd when its standard input
// closes (its parent test ended) or on SIGTERM.
//
//	go run ./e2e/idp/ldapdir -dir /tmp/x
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
	dir := flag.String("dir", "", "directory for slapd's configuration and database (required)")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "ldapdir: -dir is required")
		os.Exit(2)
	}
	if err := run(*dir); err != nil {
		fmt.Fprintln(os.Stderr, "ldapdir:", err)
		os.Exit(1)
	}
}

type user struct {
	Name     string `json:"name"`
	Password string `json:"password"`
	DN       string `json:"dn"`
}

func run(dir string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	s, err := targets.StartSlapd(ctx, dir)
	if err != nil {
		return err
	}
	defer s.Stop()
	users := map[string]user{}
	for _, u := range []targets.SlapdUser{targets.SlapdAlice, targets.SlapdBob, targets.SlapdCarol} {
		users[u.UID] = user{Name: u.UID, Password: u.Password, DN: u.DN()}
	}
	info := map[string]any{"url": s.URL, "ldapsURL": s.LDAPSURL, "caPEM": string(s.CAPEM),
		"bindDN": targets.SlapdServiceDN, "bindPassword": s.ServicePassword,
		"userBase": targets.SlapdPeople, "groupBase": targets.SlapdGroups, "users": users,
		"groups": map[string]string{"ops": targets.SlapdGroupDN("ops"), "dev": targets.SlapdGroupDN("dev"), "staff": targets.SlapdGroupDN("staff")}}
	if err := json.NewEncoder(os.Stdout).Encode(info); err != nil {
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
