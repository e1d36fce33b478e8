package sshgw

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"sync"

	"golang.org/x/crypto/ssh"

	"github.com/keyway-dev/keyway/gateway/wire"
)

// Relay buffers.
const (
	// copyBufferSize is the buffer from the target to the portal.
	copyBufferSize = 256 << 10
	// maxPacket bounds an SFTP packet from the portal: OpenSSH takes
	// messages of 256 KiB; a little more is left to the target to refuse.
	maxPacket = 256<<10 + 1024
)

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
		up, _ = copyPackets(s.stdin, stream)
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

// copyPackets copies SFTP packets (a 4-byte big-endian length, then the
// packet) from src to dst, each in one write. A TLS read yields at most
// one 16 KiB record; writing whole packets instead fills SSH packets to
// their 32 KiB, halving the packets (and the target's work per byte) of
// an upload. A packet over maxPacket ends the copy.
func copyPackets(dst io.Writer, src io.Reader) (int64, error) {
	r := bufio.NewReaderSize(src, 64<<10)
	buf := make([]byte, 0, 64<<10)
	var n int64
	for {
		hdr, err := r.Peek(4)
		if err != nil {
			return n, err
		}
		size := 4 + int(binary.BigEndian.Uint32(hdr))
		if size > maxPacket {
			return n, fmt.Errorf("SFTP packet of %d bytes from the portal exceeds %d", size, maxPacket)
		}
		if cap(buf) < size {
			buf = make([]byte, 0, size)
		}
		p := buf[:size]
		if _, err := io.ReadFull(r, p); err != nil {
			return n, err
		}
		if _, err := dst.Write(p); err != nil {
			return n, err
		}
		n += int64(size)
	}
}
