package wire

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRequestRoundTrip(t *testing.T) {
	t.Parallel()
	req := &Request{
		Kind: KindSession, Protocol: ProtocolSSH, SessionID: "s1", User: "alice", ClientAddr: "127.0.0.1",
		Resource: "web-1", Target: Target{Host: "127.0.0.1", Port: 2222},
		Credentials: Credentials{Username: "root", Password: "hunter22"},
		Terminal:    &Terminal{Term: "xterm", Cols: 80, Rows: 24},
	}
	var buf bytes.Buffer
	if err := WriteRequest(&buf, req); err != nil {
		t.Fatal(err)
	}
	got, err := ReadRequest(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if got.Credentials.Password != "hunter22" || got.Target.Port != 2222 || got.Terminal.Cols != 80 {
		t.Fatalf("round trip changed the request: %+v", got)
	}
	if err := got.Validate(); err != nil {
		t.Fatal(err)
	}
}

func frame(body string) []byte {
	b := make([]byte, 4+len(body))
	binary.BigEndian.PutUint32(b, uint32(len(body)))
	copy(b[4:], body)
	return b
}

func TestReadRequestRefuses(t *testing.T) {
	t.Parallel()
	huge := make([]byte, 4)
	binary.BigEndian.PutUint32(huge, maxRequestSize+1)
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"short header", []byte{0, 0}},
		{"zero length", []byte{0, 0, 0, 0}},
		{"oversized", huge},
		{"truncated body", frame(`{"kind":"session"}`)[:10]},
		{"not json", frame(`GET / HTTP/1.1`)},
		{"unknown field", frame(`{"kind":"session","evil":1}`)},
		{"trailing data", frame(`{"kind":"session"} {}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ReadRequest(bytes.NewReader(tc.in)); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	ok := func() Request {
		return Request{Kind: KindSession, Protocol: ProtocolSSH, Target: Target{Host: "h", Port: 22}}
	}
	for _, tc := range []struct {
		name string
		edit func(*Request)
	}{
		{"kind", func(r *Request) { r.Kind = "shell" }},
		{"protocol", func(r *Request) { r.Protocol = "telnet" }},
		{"no host", func(r *Request) { r.Target.Host = "" }},
		{"port 0", func(r *Request) { r.Target.Port = 0 }},
		{"port too big", func(r *Request) { r.Target.Port = 70000 }},
		{"huge terminal", func(r *Request) { r.Terminal = &Terminal{Cols: 5000, Rows: 10} }},
		{"zero terminal", func(r *Request) { r.Terminal = &Terminal{Cols: 0, Rows: 10} }},
		{"colour depth", func(r *Request) { r.Desktop = &Desktop{ColorDepth: 12} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ok()
			tc.edit(&r)
			if r.Validate() == nil {
				t.Fatal("accepted")
			}
		})
	}
	r := ok()
	if err := r.Validate(); err != nil {
		t.Fatalf("valid request refused: %v", err)
	}
}

func TestSecretRedacted(t *testing.T) {
	t.Parallel()
	s := Secret("hunter22")
	if strings.Contains(s.String(), "hunter") || strings.Contains(s.LogValue().String(), "hunter") {
		t.Fatal("secret printed")
	}
}

func TestFrames(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	WriteFrame(&buf, FrameData, []byte("hello"))
	WriteFrame(&buf, FrameResize, ResizePayload(120, 40))
	WriteFrame(&buf, FrameExit, Exit{Status: 3}.Payload())
	fr := NewFrameReader(&buf)
	ft, p, err := fr.Next()
	if err != nil || ft != FrameData || string(p) != "hello" {
		t.Fatalf("data frame: %v %v %q", err, ft, p)
	}
	ft, p, _ = fr.Next()
	if c, r, err := ParseResize(p); ft != FrameResize || err != nil || c != 120 || r != 40 {
		t.Fatalf("resize frame: %v %d %d %v", ft, c, r, err)
	}
	ft, p, _ = fr.Next()
	if e, err := ParseExit(p); ft != FrameExit || err != nil || e.Status != 3 {
		t.Fatalf("exit frame: %v %+v %v", ft, e, err)
	}
	if _, _, err := fr.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after last frame: %v", err)
	}
	if err := WriteFrame(io.Discard, FrameData, make([]byte, MaxFramePayload+1)); err == nil {
		t.Fatal("oversized frame written")
	}
	bad := []byte{9, 0, 0, 0, 0}
	if _, _, err := NewFrameReader(bytes.NewReader(bad)).Next(); err == nil {
		t.Fatal("unknown frame type accepted")
	}
	big := []byte{1, 0xff, 0xff, 0xff, 0xff}
	if _, _, err := NewFrameReader(bytes.NewReader(big)).Next(); err == nil {
		t.Fatal("oversized frame accepted")
	}
}

func TestPublicKeyText(t *testing.T) {
	t.Parallel()
	id := newTestIdentity(t)
	k, err := ParsePublicKey(" " + id.PublicKeyString() + "\n")
	if err != nil || !k.Equal(id.PublicKey()) {
		t.Fatalf("parse own key: %v", err)
	}
	for _, bad := range []string{"", "ssh-ed25519 AAAA", "ed25519:!!!", "ed25519:AAAA"} {
		if _, err := ParsePublicKey(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func newTestIdentity(t testing.TB) *Identity {
	t.Helper()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	id, err := NewIdentity(key)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestLoadOrCreateIdentity(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "sub", "id.pem")
	a, err := LoadOrCreateIdentity(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	b, err := LoadOrCreateIdentity(path)
	if err != nil || !a.PublicKey().Equal(b.PublicKey()) {
		t.Fatalf("reload gave another key: %v", err)
	}
	os.WriteFile(path, []byte("garbage"), 0o600)
	if _, err := LoadOrCreateIdentity(path); err == nil {
		t.Fatal("garbage key file accepted")
	}
}

// handshake runs a TLS handshake between the two configs over a pipe and
// returns the client's and server's errors.
func handshake(client, server *tls.Config) (error, error) {
	c, s := net.Pipe()
	defer c.Close()
	defer s.Close()
	errc := make(chan error, 1)
	go func() {
		srv := tls.Server(s, server)
		err := srv.Handshake()
		if err == nil {
			// Under TLS 1.3 the client learns of a refused certificate on
			// its first read.
			_, err = srv.Write([]byte{1})
		}
		s.Close()
		errc <- err
	}()
	cl := tls.Client(c, client)
	err := cl.Handshake()
	if err == nil {
		_, err = cl.Read(make([]byte, 1))
	}
	c.Close()
	return err, <-errc
}

func TestMutualPinning(t *testing.T) {
	t.Parallel()
	portal, gw, stranger := newTestIdentity(t), newTestIdentity(t), newTestIdentity(t)
	trustPortal := func(k ed25519.PublicKey) bool { return k.Equal(portal.PublicKey()) }

	if ce, se := handshake(ClientTLSConfig(portal, gw.PublicKey()), ServerTLSConfig(gw, trustPortal)); ce != nil || se != nil {
		t.Fatalf("pinned keys refused: client %v, server %v", ce, se)
	}
	if _, se := handshake(ClientTLSConfig(stranger, gw.PublicKey()), ServerTLSConfig(gw, trustPortal)); se == nil || !strings.Contains(se.Error(), "not trusted") {
		t.Fatalf("unpinned client accepted: %v", se)
	}
	if ce, _ := handshake(ClientTLSConfig(portal, gw.PublicKey()), ServerTLSConfig(stranger, trustPortal)); ce == nil || !strings.Contains(ce.Error(), "does not match the pinned key") {
		t.Fatalf("impostor gateway accepted: %v", ce)
	}
	if ce, _ := handshake(ClientTLSConfig(portal, nil), ServerTLSConfig(gw, trustPortal)); ce == nil {
		t.Fatal("gateway with no pinned key accepted")
	}
}

func FuzzReadRequest(f *testing.F) {
	f.Add(frame(`{"kind":"session","protocol":"ssh","target":{"host":"h","port":22},"terminal":{"term":"x","cols":1,"rows":1}}`))
	f.Add(frame(`{}`))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ReadRequest(bytes.NewReader(b))
		if err != nil {
			return
		}
		r.Validate()
		var buf bytes.Buffer
		if err := WriteRequest(&buf, r); err != nil {
			t.Fatalf("a request that was read cannot be written: %v", err)
		}
	})
}

func FuzzReadResponse(f *testing.F) {
	f.Add(frame(`{"ok":false,"code":"auth_failed","message":"no"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := ReadResponse(bytes.NewReader(b)); err == nil {
			_ = r.Err()
		}
	})
}

func FuzzFrameReader(f *testing.F) {
	var buf bytes.Buffer
	WriteFrame(&buf, FrameData, []byte("x"))
	WriteFrame(&buf, FrameResize, ResizePayload(1, 1))
	WriteFrame(&buf, FrameExit, Exit{Status: 1, Message: "m"}.Payload())
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		fr := NewFrameReader(bytes.NewReader(b))
		for {
			ft, p, err := fr.Next()
			if err != nil {
				return
			}
			if len(p) > MaxFramePayload {
				t.Fatalf("payload of %d bytes", len(p))
			}
			switch ft {
			case FrameResize:
				ParseResize(p)
			case FrameExit:
				ParseExit(p)
			}
		}
	})
}
