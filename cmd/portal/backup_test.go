package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/keyway-dev/keyway/portal/backup"
)

// TestBackupRestoreSignIn backs up a running portal while users sign in
// (each sign-in writes a web session and an audit event), restores the
// backup into a fresh data directory holding the same secrets key, starts
// a portal there and signs in over HTTPS; the restored audit log
// verifies. A different key and a damaged file are refused.
func TestBackupRestoreSignIn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	for _, name := range []string{"alice", "bob"} {
		if err := run(ctx, []string{"users", "add", name, "--role", "user", "--password-stdin", "--data", dir},
			strings.NewReader("a-long-password-1\n"), io.Discard, io.Discard); err != nil {
			t.Fatal(err)
		}
	}
	p, _, _ := startPortalAt(t, dir, "127.0.0.1:0")
	// Signed in before the backup: the web session is in it.
	early := newBrowser(t, p.URL)
	early.signIn("bob", "a-long-password-1")

	// Writers sign in until the backup is done; the backup starts once
	// each has written.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	signIns := map[string]int{}
	var started sync.WaitGroup
	for _, name := range []string{"alice", "bob"} {
		wg.Add(1)
		started.Add(1)
		go func() {
			defer wg.Done()
			first := true
			for {
				b := newBrowser(t, p.URL)
				resp, err := b.client.PostForm(p.URL+"/signin", url.Values{"username": {name}, "password": {"a-long-password-1"}})
				if err != nil || resp.StatusCode != http.StatusSeeOther {
					t.Errorf("sign in as %s during the backup: %v %v", name, resp, err)
					if first {
						started.Done()
					}
					return
				}
				resp.Body.Close()
				mu.Lock()
				signIns[name]++
				mu.Unlock()
				if first {
					started.Done()
					first = false
				}
				select {
				case <-stop:
					return
				default:
				}
			}
		}()
	}
	started.Wait()
	file := filepath.Join(t.TempDir(), "keyway.tar")
	var out bytes.Buffer
	err := run(ctx, []string{"backup", "--to", file, "--data", dir}, nil, &out, io.Discard)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("backup while signing in: %v", err)
	}
	for _, want := range []string{"backup written to " + file, "2 users", "audit log verified", "signed checkpoints included: ",
		"the secrets key is NOT in the backup", "recordings are NOT in the backup"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("backup output lacks %q:\n%s", want, out.String())
		}
	}
	t.Logf("sign-ins while backing up: %v\n%s", signIns, out.String())

	key, err := os.ReadFile(filepath.Join(dir, "secrets.key"))
	if err != nil {
		t.Fatal(err)
	}
	fresh := func(key []byte) string {
		d := filepath.Join(t.TempDir(), "data")
		os.MkdirAll(d, 0o700)
		os.WriteFile(filepath.Join(d, "secrets.key"), key, 0o600)
		return d
	}

	// A different key is refused, naming the one needed and where.
	other := fresh(bytes.Repeat([]byte{1}, 32))
	err = run(ctx, []string{"restore", "--from", file, "--data", other}, nil, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "put the key whose SHA-256 is "+backup.KeySHA256(key)) ||
		!strings.Contains(err.Error(), filepath.Join(other, "secrets.key")) {
		t.Fatalf("restore with another key: %v", err)
	}
	// A damaged file is refused.
	raw, _ := os.ReadFile(file)
	bad := bytes.Clone(raw)
	bad[len(bad)/2] ^= 0xff
	badFile := filepath.Join(t.TempDir(), "bad.tar")
	os.WriteFile(badFile, bad, 0o600)
	err = run(ctx, []string{"restore", "--from", badFile, "--data", fresh(key)}, nil, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("restore a damaged file: %v", err)
	}

	// The real restore, into a fresh directory with the same key.
	restored := fresh(key)
	out.Reset()
	if err := run(ctx, []string{"restore", "--from", file, "--data", restored}, nil, &out, io.Discard); err != nil {
		t.Fatalf("restore: %v", err)
	}
	for _, want := range []string{"restored " + file + " into " + restored, "2 users", "audit log verified", "chain intact; latest checkpoint: event ",
		"recordings are NOT in the backup", "portal-identity.pem"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("restore output lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := run(ctx, []string{"audit", "verify", "--data", restored}, nil, &out, io.Discard); err != nil || !strings.Contains(out.String(), "chain intact") {
		t.Fatalf("audit verify after restore: %v %s", err, out.String())
	}
	q, _, _ := startPortalAt(t, restored, "127.0.0.1:0")
	b := newBrowser(t, q.URL)
	b.signIn("alice", "a-long-password-1")
	if resp, err := b.client.Get(q.URL + "/"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("home page after signing in on the restored portal: %v %v", resp, err)
	}
	// The session bob had at backup time is valid on the restored portal
	// (cookies are per host, not per port), as docs/backups.md says.
	early.base = q.URL
	if resp, err := newBrowser(t, q.URL).client.Get(q.URL + "/"); err != nil || resp.StatusCode == http.StatusOK {
		t.Fatalf("the home page without a session: %v %v", resp, err)
	}
	if resp, err := early.client.Get(q.URL + "/"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("bob's web session from before the backup on the restored portal: %v %v", resp, err)
	}
	// Restoring again over it needs --force.
	if err := run(ctx, []string{"restore", "--from", file, "--data", restored}, nil, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("restore over a data directory in use: %v", err)
	}
}
