//go:build linux

package app

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"golang.org/x/term"
)

// openPTY opens a pseudo-terminal pair.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	t.Cleanup(func() { master.Close() })
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { slave.Close() })
	return master, slave
}

// TestSSHTerminalOnATTY runs keyway ssh on a pseudo-terminal: the size
// goes with the request, the terminal is raw while the session runs and
// restored after, a SIGWINCH sends the new size, and the remote status is
// the exit status.
func TestSSHTerminalOnATTY(t *testing.T) {
	f := newFakePortal(t, false)
	f.addResource(fakeResource{StatusResource: StatusResource{Name: "web", Protocol: "ssh", Host: "127.0.0.1", Port: 22, Terminal: true}})
	dir := signIn(t, f)
	master, slave := openPTY(t)
	fd := int(slave.Fd())
	if err := unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Col: 90, Row: 20}); err != nil {
		t.Fatal(err)
	}
	before, err := term.GetState(fd)
	if err != nil {
		t.Fatal(err)
	}
	stderr := newSyncBuffer()
	done := make(chan int, 1)
	go func() {
		done <- Run(context.Background(), Env{
			Stdin: slave, Stdout: slave, Stderr: stderr, Version: "test",
			Getenv: func(k string) string {
				return map[string]string{"KEYWAY_CONFIG_DIR": dir, "TERM": "xterm"}[k]
			},
		}, []string{"ssh", "web"})
	}()
	out := newSyncBuffer()
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			out.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}()
	out.waitFor(t, "hello cols=90&rows=20&term=xterm")
	if raw, err := term.GetState(fd); err != nil || *raw == *before {
		t.Error("the terminal is not in raw mode during the session")
	}
	if err := unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Col: 100, Row: 30}); err != nil {
		t.Fatal(err)
	}
	// The test process is not the terminal's foreground process, so the
	// kernel does not signal it: the test does.
	syscall.Kill(os.Getpid(), syscall.SIGWINCH)
	f.waitUntil(t, "the resize", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return strings.Contains(strings.Join(f.resizes, " "), "100x30")
	})
	master.Write([]byte("exit\r"))
	select {
	case code := <-done:
		if code != 3 {
			t.Errorf("exit status %d, want 3; stderr %s", code, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("keyway ssh did not end")
	}
	if after, err := term.GetState(fd); err != nil || *after != *before {
		t.Error("the terminal was not restored")
	}
	// keyway's reader of a terminal cannot be interrupted (the process
	// ends around it): a last line lets it see the session is over.
	master.Write([]byte("\r"))
}
