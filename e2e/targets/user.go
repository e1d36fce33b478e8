package targets

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/crypto/ssh"
)

// passwordFile keeps TestUser's password beside the system's own files, so
// every test process and the demo agree on it.
const passwordFile = "/var/lib/keyway-test/password"

// lockFile serialises account changes between concurrent test processes.
const lockFile = "/var/lib/keyway-test/lock"

// ensureTestUser creates TestUser with a password if needed and returns the
// password. It needs root, as the servers do.
func ensureTestUser(string) (string, error) {
	if err := os.MkdirAll(filepath.Dir(passwordFile), 0o700); err != nil {
		return "", fmt.Errorf("create %s (the tests run as root): %w", filepath.Dir(passwordFile), err)
	}
	lock, err := os.OpenFile(lockFile, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock %s: %w", lockFile, err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)

	if _, err := user.Lookup(TestUser); err != nil {
		if out, err := exec.Command("useradd", "-m", "-s", "/bin/bash", TestUser).CombinedOutput(); err != nil {
			return "", fmt.Errorf("useradd %s: %v: %s", TestUser, err, out)
		}
	}
	if pw, err := os.ReadFile(passwordFile); err == nil && len(pw) > 0 {
		return string(pw), nil
	}
	pw := "kw-" + rand.Text()[:16]
	cmd := exec.Command("chpasswd")
	cmd.Stdin = strings.NewReader(TestUser + ":" + pw + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("chpasswd: %v: %s", err, out)
	}
	if err := os.WriteFile(passwordFile, []byte(pw), 0o600); err != nil {
		return "", err
	}
	return pw, nil
}

// authorizeKey adds key to TestUser's authorized_keys unless it is there.
func authorizeKey(key ssh.PublicKey) error {
	u, err := user.Lookup(TestUser)
	if err != nil {
		return err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	dir := filepath.Join(u.HomeDir, ".ssh")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	os.Chown(dir, uid, gid)
	path := filepath.Join(dir, "authorized_keys")
	line := ssh.MarshalAuthorizedKey(key)

	lock, err := os.OpenFile(lockFile, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	syscall.Flock(int(lock.Fd()), syscall.LOCK_EX)
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	existing, _ := os.ReadFile(path)
	if bytes.Contains(existing, bytes.TrimSpace(line)) {
		return nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Write(line); err != nil {
		return err
	}
	return os.Chown(path, uid, gid)
}

// TestUserPassword returns TestUser's system password, creating the user
// if needed.
func TestUserPassword() (string, error) { return ensureTestUser("") }
