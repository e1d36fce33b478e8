package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/term"

	"github.com/keyway-dev/keyway/gateway/wire"
)

// Terminal defaults when standard output is not a terminal.
const (
	defaultCols = 80
	defaultRows = 24
	// stdinChunk is what one FrameData carries from standard input at most.
	stdinChunk = 16 << 10
	// exitNoStatus is keyway ssh's status when the session ended without
	// the remote one, as OpenSSH's ssh does.
	exitNoStatus = 255
	eot          = 0x04 // ^D: end of input for the remote terminal
)

func (a *app) ssh(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("ssh", flag.ContinueOnError)
	http1 := fs.Bool("http1", false, "use HTTP/1.1 CONNECT")
	fs.BoolVar(&a.noBrowser, "no-browser", false, "do not open a browser for an MFA check; only print its address")
	pos, sshArgs, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("usage: keyway ssh RESOURCE [-- ssh arguments]")
	}
	name := pos[0]
	s, _, res, err := a.granted(ctx, *http1, name)
	if err != nil {
		return err
	}
	defer s.client.Close()
	switch {
	case res.Terminal:
		if len(sshArgs) > 0 {
			return fmt.Errorf("%s opens a recorded terminal in which ssh arguments have no place; leave out what follows --", name)
		}
		return a.terminal(ctx, s, name)
	case res.Tunnel:
		s.client.Close()
		return a.openSSH(ctx, name, *http1, sshArgs)
	default:
		return fmt.Errorf("%s is neither a terminal nor tunnelled for native clients", name)
	}
}

// openSSH runs OpenSSH's ssh with this program as its ProxyCommand.
func (a *app) openSSH(ctx context.Context, name string, http1 bool, sshArgs []string) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the keyway program for ssh's ProxyCommand: %w", err)
	}
	proxy := quoteArg(self) + " tunnel --stdio " + quoteArg(name)
	if a.noBrowser {
		proxy = quoteArg(self) + " tunnel --stdio --no-browser " + quoteArg(name)
	}
	if http1 {
		proxy += " --http1"
	}
	// ssh reads options after the destination too, up to the command.
	args := append([]string{"-o", "ProxyCommand=" + proxy, name}, sshArgs...)
	cmd := exec.CommandContext(ctx, "ssh", args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = a.env.Stdin, a.env.Stdout, a.env.Stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return exitError{code: ee.ExitCode()}
	}
	if err != nil {
		return fmt.Errorf("run ssh (OpenSSH's client must be installed): %w", err)
	}
	return nil
}

// quoteArg quotes s for the shell OpenSSH runs ProxyCommand with.
func quoteArg(s string) string {
	if runtime.GOOS == "windows" {
		return `"` + s + `"`
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// terminal runs a recorded terminal session on the stream's frames.
func (a *app) terminal(ctx context.Context, s *session, name string) error {
	cols, rows := defaultCols, defaultRows
	outFd, outTTY := fdOf(a.env.Stdout)
	if outTTY {
		if c, r, err := term.GetSize(outFd); err == nil && c > 0 && r > 0 {
			cols, rows = c, r
		}
	}
	termName := a.env.Getenv("TERM")
	if termName == "" {
		termName = "xterm-256color"
	}
	// Asked for before the session starts, so no resize is missed.
	resized, stopResize := resizeSignals()
	defer stopResize()
	q := url.Values{"cols": {strconv.Itoa(cols)}, "rows": {strconv.Itoa(rows)}, "term": {termName}}
	st, err := s.client.Open(ctx, "terminal/"+name+"?"+q.Encode())
	if err != nil {
		if e := a.refused(ctx, s, err); e != nil {
			return e
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	defer st.Close()
	stop := context.AfterFunc(ctx, func() { st.Close() })
	defer stop()

	inFd, inTTY := fdOf(a.env.Stdin)
	if inTTY {
		old, err := term.MakeRaw(inFd)
		if err != nil {
			return fmt.Errorf("put the terminal in raw mode: %w", err)
		}
		defer term.Restore(inFd, old)
	}
	var wmu sync.Mutex
	fw := wire.NewFrameWriter(st)
	write := func(t wire.FrameType, p []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		return fw.Write(t, p)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(done)
	if outTTY {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				case <-resized:
					if c, r, err := term.GetSize(outFd); err == nil && c > 0 && r > 0 && c <= 0xffff && r <= 0xffff {
						write(wire.FrameResize, wire.ResizePayload(uint16(c), uint16(r)))
					}
				}
			}
		}()
	}
	// The standard input reader cannot always be interrupted (a
	// terminal): the process ends around it.
	go func() {
		buf := make([]byte, stdinChunk)
		for {
			n, err := a.env.Stdin.Read(buf)
			if n > 0 && write(wire.FrameData, buf[:n]) != nil {
				return
			}
			if err != nil {
				if errors.Is(err, io.EOF) && !inTTY {
					// Piped input ended: end the remote terminal's input
					// as a typed ^D would.
					write(wire.FrameData, []byte{eot})
				}
				return
			}
		}
	}()
	fr := wire.NewFrameReader(st)
	for {
		t, p, err := fr.Next()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			a.stderr.line("keyway: " + name + ": the session ended without an exit status")
			return exitError{code: exitNoStatus}
		}
		switch t {
		case wire.FrameData:
			if _, err := a.env.Stdout.Write(p); err != nil {
				return fmt.Errorf("write to standard output: %w", err)
			}
		case wire.FrameExit:
			e, err := wire.ParseExit(p)
			if err != nil {
				return exitError{code: exitNoStatus}
			}
			if e.Message != "" {
				defer a.stderr.line("keyway: " + name + ": " + oneLine(e.Message))
			}
			if e.Status == 0 && e.Signal != "" {
				return exitError{code: exitNoStatus}
			}
			if e.Status != 0 {
				return exitError{code: e.Status}
			}
			return nil
		}
	}
}

// fdOf is the file descriptor behind r or w when it is a terminal.
func fdOf(v any) (int, bool) {
	f, ok := v.(*os.File)
	if !ok {
		return 0, false
	}
	fd := int(f.Fd())
	return fd, term.IsTerminal(fd)
}
