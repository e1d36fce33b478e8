package sshgw

import (
	"context"
	"fmt"
	"io"
	"sync"

	"golang.org/x/crypto/ssh"

	"github.com/keyway-dev/keyway/gateway/wire"
)

// copyBufferSize is the relay's buffer per direction: large enough for
// several SFTP packets (32 KiB of data each) per read.
const copyBufferSize = 256 << 10

// SFTP is a target's sftp subsystem, opened with injected credentials.
type SFTP struct {
	client  *Client
	session *ssh.Session
	stdin   io.WriteCloser
	stdout  io.Reader
}

// OpenSFTP dials the target, signs in and starts its sftp subsystem. The
// Response is what the gateway answers the portal: ok with the host key, or
// the refusal.
func (e *Engine) OpenSFTP(ctx context.Context, req *wire.Request) (*SFTP, *wire.Response) {
	c, resp := e.Dial(ctx, req)
	if resp != nil {
		return nil, resp
	}
	s, err := startSubsystem(c, "sftp")
	if err != nil {
		c.Close()
		return nil, &wire.Response{Code: wire.CodeUnsupported,
			Message: fmt.Sprintf("the target %s accepted the login but did not start its SFTP service: %v", req.Target, err),
			HostKey: c.HostKey, HostKeyFingerprint: c.Fingerprint}
	}
	return s, &wire.Response{OK: true, HostKey: c.HostKey, HostKeyFingerprint: c.Fingerprint}
}

func startSubsystem(c *Client, name string) (*SFTP, error) {
	s, err := c.NewSession()
	if err != nil {
		return nil, fmt.Errorf("open session: %w", err)
	}
	stdin, err := s.StdinPipe()
	if err != nil {
		s.Close()
		return nil, err
	}
	stdout, err := s.StdoutPipe()
	if err != nil {
		s.Close()
		return nil, err
	}
	if err := s.RequestSubsystem(name); err != nil {
		s.Close()
		return nil, fmt.Errorf("request subsystem %s: %w", name, err)
	}
	return &SFTP{client: c, session: s, stdin: stdin, stdout: stdout}, nil
}

// Close ends the subsystem and the connection.
func (s *SFTP) Close() error {
	s.session.Close()
	return s.client.Close()
}

// Relay copies the raw SFTP protocol between the portal's stream and the
// target until either side ends, then closes both. It returns the bytes
// sent to the target and received from it.
func (s *SFTP) Relay(stream io.ReadWriteCloser) (up, down int64) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // portal → target
		defer wg.Done()
		up, _ = io.CopyBuffer(s.stdin, stream, make([]byte, copyBufferSize))
		// The portal is done: ending the session unblocks the copy below.
		s.Close()
	}()
	down, _ = io.CopyBuffer(stream, s.stdout, make([]byte, copyBufferSize))
	// The target is done (or the portal stopped reading): closing the
	// stream unblocks the copy above.
	stream.Close()
	s.Close()
	wg.Wait()
	return up, down
}
