package vnc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

	"github.com/keyway-dev/keyway/gateway/wire"
)

// FuzzReadMessage feeds arbitrary server messages to a client with a small
// screen: nothing may panic or allocate beyond the limits.
func FuzzReadMessage(f *testing.F) {
	// A raw 1x1 rectangle, a CopyRect, a resize, a bell, cut text.
	f.Add([]byte{0, 0, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 0, 0, 0, 1, 2, 3, 0})
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 0, 0, 2, 0, 2, 0, 0, 0, 1, 0, 1, 0, 1})
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 0, 0, 8, 0, 8, 0xff, 0xff, 0xff, 0x21})
	f.Add([]byte{2, 3, 0, 0, 0, 0, 0, 0, 3, 'a', 'b', 'c'})
	// A 2x1 cursor with hotspot (1,0): two pixels, one mask byte.
	f.Add([]byte{0, 0, 0, 1, 0, 1, 0, 0, 0, 2, 0, 1, 0xff, 0xff, 0xff, 0x11, 1, 2, 3, 0, 4, 5, 6, 0, 0x80})
	// RRE with one subrectangle; a Hextile tile with a subrectangle.
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 0, 0, 4, 0, 4, 0, 0, 0, 2, 0, 0, 0, 1, 1, 2, 3, 0, 4, 5, 6, 0, 0, 1, 0, 1, 0, 2, 0, 2})
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 0, 0, 4, 0, 4, 0, 0, 0, 5, 14, 1, 2, 3, 0, 4, 5, 6, 0, 1, 0x12, 0x10})
	// Tight: a fill, a two-colour palette, a compressed copy, a JPEG header.
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 0, 0, 4, 0, 2, 0, 0, 0, 7, 0x80, 1, 2, 3})
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 0, 0, 4, 0, 2, 0, 0, 0, 7, 0x40, 1, 1, 1, 2, 3, 4, 5, 6, 0x90, 0x60})
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 0, 0, 4, 0, 2, 0, 0, 0, 7, 0x00, 5, 0x78, 0x9c, 0x62, 0x60, 0x00})
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 0, 0, 4, 0, 2, 0, 0, 0, 7, 0x90, 4, 0xff, 0xd8, 0xff, 0xd9})
	// Extended clipboard: capabilities, notify, provide (bad zlib).
	f.Add([]byte{3, 0, 0, 0, 0xff, 0xff, 0xff, 0xf8, 0x1f, 0, 0, 1, 0, 0, 0, 64})
	f.Add([]byte{3, 0, 0, 0, 0xff, 0xff, 0xff, 0xfc, 0x08, 0, 0, 1})
	f.Add([]byte{3, 0, 0, 0, 0xff, 0xff, 0xff, 0xf8, 0x10, 0, 0, 1, 0x78, 0x9c, 0x03, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		// The message length picks the colour depth, so every decoder
		// meets each pixel size.
		c := testClient(t, []int{24, 16, 8}[len(b)%3], b, 16, 16)
		for range 64 {
			u, err := c.ReadMessage()
			if err != nil {
				return
			}
			bounds := c.fb.Bounds()
			for _, r := range u.Rects {
				if !r.In(bounds) && !u.Resized {
					t.Fatalf("changed rectangle %v outside %v", r, bounds)
				}
			}
		}
	})
}

// FuzzHandshake plays arbitrary server bytes to Connect over a pipe: the
// version, security types, a refusal's reason, VeNCrypt's version and
// sub-types, the security result and its reason, the ServerInit and its
// desktop name. Nothing may panic, hang or allocate beyond the limits.
// mode picks the client's credentials, pin and depth, and how the bytes
// are cut into writes (one at a time reaches the TLS handshake).
func FuzzHandshake(f *testing.F) {
	version := []byte("RFB 003.008\n")
	challenge := bytes.Repeat([]byte{7}, 16)
	ok := []byte{0, 0, 0, 0}
	init := serverInit(64, 48, "seed desktop")
	reason := func(s string) []byte { return binary.BigEndian.AppendUint32(nil, uint32(len(s))) }
	vencrypt := func(subs ...uint32) []byte {
		b := []byte{1, secVeNCrypt, 0, 2, 0, byte(len(subs))}
		for _, s := range subs {
			b = binary.BigEndian.AppendUint32(b, s)
		}
		return b
	}
	f.Add(uint8(0), slices.Concat(version, []byte{1, secNone}, ok, init))
	f.Add(uint8(1), slices.Concat(version, []byte{1, secVNCAuth}, challenge, ok, init))
	f.Add(uint8(1), slices.Concat(version, []byte{0}, reason("too many connections"), []byte("too many connections")))
	f.Add(uint8(1), slices.Concat(version, []byte{1, secVNCAuth}, challenge, []byte{0, 0, 0, 1}, reason("bad password"), []byte("bad password")))
	f.Add(uint8(1), slices.Concat(version, vencrypt(secNone, secVNCAuth), []byte{0, 0, 0, 1}, ok, init))
	f.Add(uint8(1|1<<5), slices.Concat(version, vencrypt(vencX509Vnc), []byte{1}, []byte{0x16, 3, 1, 0, 4, 2, 0, 0, 0}))
	f.Add(uint8(3|4|1<<5), slices.Concat(version, vencrypt(vencX509Plain, vencTLSPlain), []byte{1}))
	f.Add(uint8(0), slices.Concat(version, []byte{1, secNone}, ok, serverInit(128, 12*96, "x11vnc -ncache")))
	f.Add(uint8(0), slices.Concat(version, []byte{1, secNone}, ok, serverInit(65535, 65535, "huge")))
	f.Add(uint8(0), []byte("RFB 003.003\n"))
	f.Add(uint8(0), []byte("SSH-2.0-OpenSSH_9.2\r\n"))
	f.Fuzz(func(t *testing.T, mode uint8, b []byte) {
		cfg := Config{Depth: []int{24, 16, 8, 24}[mode>>3&3], maxPixels: 1 << 16}
		if mode&1 != 0 {
			cfg.Password = "fuzzpw12"
		}
		if mode&2 != 0 {
			cfg.Username = "fuzzer"
		}
		if mode&4 != 0 {
			cfg.PinnedCert = wire.CertPrefix + "SHA256:ZnV6eg"
		}
		chunk := len(b)
		if n := mode >> 5; n > 0 {
			chunk = 1 << (n - 1)
		}
		srv, cli := net.Pipe()
		cli.SetDeadline(time.Now().Add(10 * time.Second))
		var wg sync.WaitGroup
		wg.Go(func() { io.Copy(io.Discard, srv) })
		wg.Go(func() {
			defer srv.Close()
			for p := b; len(p) > 0; p = p[min(chunk, len(p)):] {
				if _, err := srv.Write(p[:min(chunk, len(p))]); err != nil {
					return
				}
			}
		})
		c, err := Connect(cli, cfg)
		cli.Close() // ends the server's writes the client did not read
		wg.Wait()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("the handshake hung: %v", err)
			}
			// What the server says reaches the user quoted or cleaned.
			if i := strings.IndexFunc(err.Error(), unicode.IsControl); i >= 0 {
				t.Fatalf("error with a control character: %q", err)
			}
			return
		}
		if len(c.Name) > maxName {
			t.Fatalf("a desktop name of %d bytes", len(c.Name))
		}
		fw, fh := c.FramebufferSize()
		if fw*fh > cfg.maxPixels {
			t.Fatalf("a %dx%d framebuffer", fw, fh)
		}
		if w, h := c.Size(); w > fw || h > fh || w == 0 || h == 0 {
			t.Fatalf("shows %dx%d of a %dx%d framebuffer", w, h, fw, fh)
		}
	})
}
