package targets

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// childSignal is what a server started here receives when the process that
// started it dies, however it dies (a test binary that panicked, a `portal
// demo` killed with SIGKILL). SIGTERM lets the X servers remove their lock
// files and sockets, which a later start looks for.
const childSignal = syscall.SIGTERM

// startChild starts cmd so that it does not outlive this process, and
// returns a channel closed once it has exited and been waited for.
//
// Linux sends the parent-death signal (Pdeathsig) when the thread that
// forked the child exits, not when its process does. The Go runtime ends
// an OS thread when a goroutine locked to it returns without unlocking
// (cgo code does this), so a child forked from an ordinary goroutine could
// be signalled at any later moment. Here one goroutine, locked to its
// thread and never unlocked, forks the child and waits for it: that thread
// ends only after the child has exited, or with the whole process.
func startChild(cmd *exec.Cmd) (<-chan struct{}, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = childSignal
	started := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the thread must not serve other goroutines,
		// one of which might lock it and end it while the child runs.
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		cmd.Wait()
		close(done)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return done, nil
}

// signalAndWait sends sig to a server started by startChild and waits
// until it has exited (done closed), killing it if it is still running
// after grace: a server that ignores its stop signal must not hang a test.
func signalAndWait(cmd *exec.Cmd, done <-chan struct{}, sig syscall.Signal, grace time.Duration) {
	cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(grace):
		cmd.Process.Kill()
		<-done
	}
}

// child is an X client or helper started by startChild, stopped with its
// server.
type child struct {
	cmd  *exec.Cmd
	done <-chan struct{}
}

// stopChildren ends each child's process group (they are started with
// Setpgid) and waits for the children.
func stopChildren(cs []child) {
	for _, c := range cs {
		syscall.Kill(-c.cmd.Process.Pid, syscall.SIGTERM)
		<-c.done
	}
}

// absDir returns a server's directory as an absolute path. Servers get
// paths built from it and may not run where this process does
// (freerdp-shadow-cli cannot create its configuration under a relative
// path at all).
func absDir(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("server directory %s: %w", dir, err)
	}
	return abs, nil
}

// lockedBuffer is a server's output, written by exec's copying goroutine
// while a test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitLogged waits until out holds line, which a server logs once it has
// done something a probe from outside cannot tell apart from another
// process doing it (binding a port another test may have taken since
// freePort chose it).
func waitLogged(ctx context.Context, out *lockedBuffer, line string, exited <-chan struct{}, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !strings.Contains(out.String(), line) {
		select {
		case <-exited:
			return fmt.Errorf("server exited before logging %q", line)
		case <-ctx.Done():
			return fmt.Errorf("server did not log %q within %s", line, timeout)
		case <-tick.C:
		}
	}
	return nil
}
