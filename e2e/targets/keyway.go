package targets

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// keywayStartTimeout bounds the wait for a keyway command's first line
// (it asks the portal for its status before listening).
const keywayStartTimeout = 30 * time.Second

// BuildKeyway builds the native client (cmd/keyway) from this module into
// a test directory and returns its path. The Go build cache makes repeated
// builds cheap.
func BuildKeyway(t testing.TB) string {
	t.Helper()
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || len(strings.TrimSpace(string(gomod))) == 0 {
		t.Fatalf("find the module root: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "keyway")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/keyway")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/keyway: %v\n%s", err, out)
	}
	return bin
}

// Keyway is a running keyway command (tunnel, proxy): its output is
// collected line by line, stdout and stderr together.
type Keyway struct {
	Cmd *exec.Cmd
	// Listen is the address from its "listening on ADDR" line.
	Listen string

	done   <-chan struct{}
	mu     sync.Mutex
	lines  []string
	closed bool // the output pipe has ended: the process exited
	seen   *sync.Cond
}

var listeningLine = regexp.MustCompile(`listening on (\S+)`)

// StartKeyway runs bin with args and env (added to this process's
// environment) and returns once it prints "listening on ADDR". It is
// stopped when the test ends.
func StartKeyway(t testing.TB, bin string, env []string, args ...string) *Keyway {
	t.Helper()
	k := LaunchKeyway(t, bin, env, args...)
	line, err := k.WaitLine(keywayStartTimeout, listeningLine)
	if err != nil {
		t.Fatalf("keyway %s: %v", strings.Join(args, " "), err)
	}
	k.Listen = listeningLine.FindStringSubmatch(line)[1]
	return k
}

// LaunchKeyway runs bin with args and env (added to this process's
// environment) without waiting for anything. It is stopped when the test
// ends.
func LaunchKeyway(t testing.TB, bin string, env []string, args ...string) *Keyway {
	t.Helper()
	k := &Keyway{Cmd: exec.Command(bin, args...)}
	k.seen = sync.NewCond(&k.mu)
	k.Cmd.Env = append(os.Environ(), env...)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	k.Cmd.Stdout, k.Cmd.Stderr = w, w
	if k.done, err = startChild(k.Cmd); err != nil {
		t.Fatalf("start keyway: %v", err)
	}
	w.Close() // the child holds its own copy
	go func() {
		// Owned by the process: ends when it exits and the pipe closes.
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			k.mu.Lock()
			k.lines = append(k.lines, sc.Text())
			k.seen.Broadcast()
			k.mu.Unlock()
		}
		r.Close()
		k.mu.Lock()
		k.closed = true
		k.seen.Broadcast()
		k.mu.Unlock()
	}()
	t.Cleanup(func() { k.Stop() })
	return k
}

// Output returns every line printed so far.
func (k *Keyway) Output() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return strings.Join(k.lines, "\n")
}

// WaitLine waits until a line matching re has been printed (at any time
// since the start) and returns it.
func (k *Keyway) WaitLine(timeout time.Duration, re *regexp.Regexp) (string, error) {
	timer := time.AfterFunc(timeout, func() {
		k.mu.Lock()
		k.seen.Broadcast()
		k.mu.Unlock()
	})
	defer timer.Stop()
	deadline := time.Now().Add(timeout)
	k.mu.Lock()
	defer k.mu.Unlock()
	for {
		for _, l := range k.lines {
			if re.MatchString(l) {
				return l, nil
			}
		}
		if k.closed {
			return "", fmt.Errorf("exited without printing %q; output:\n%s", re, strings.Join(k.lines, "\n"))
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no line matching %q within %s; output:\n%s", re, timeout, strings.Join(k.lines, "\n"))
		}
		k.seen.Wait()
	}
}

// Stop interrupts the command and waits for it.
func (k *Keyway) Stop() {
	select {
	case <-k.done:
		return // exited already
	default:
	}
	k.Cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-k.done:
	case <-time.After(10 * time.Second):
		k.Cmd.Process.Kill()
		<-k.done
	}
}

// Done is closed once the process has exited.
func (k *Keyway) Done() <-chan struct{} { return k.done }

// RunKeyway runs a short keyway command (status, version) to its end.
func RunKeyway(ctx context.Context, bin string, env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}
