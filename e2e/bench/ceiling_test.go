package bench

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/keyway-dev/keyway/gateway/splice"
)

// The ceiling proxy's HTTP/2 settings are the portal's and keyway's
// (portal/httpui/httpserver.go, cmd/keyway/internal/client), so that it
// differs from the tunnel only by having no portal logic.
const (
	ceilingMaxStreams = 1024
	ceilingConnWindow = 32 << 20
	ceilingFrameSize  = 16 << 10
	// ceilingStreamWindow is both sides' per-stream receive window, as
	// the portal's http2StreamWindow and keyway's streamWindow.
	ceilingStreamWindow = 256 << 10
)

// startCeiling runs, in this process, the simplest path with the tunnel's
// architecture and returns the address applications connect to: a local
// listener whose every connection is a CONNECT stream of one x/net HTTP/2
// client connection over TLS, to a bare net/http TLS server whose CONNECT
// handler dials the target — through a bare TLS listener that splices to
// it (standing for the gateway hop) when gatewayHop, or straight over TCP.
// No authentication, sessions, audit or policy: what is left is TLS,
// HTTP/2 and the copying, so its throughput is what the tunnel could at
// best reach on this machine.
func startCeiling(b *testing.B, target string, gatewayHop bool) string {
	b.Helper()
	cert, pool := ceilingCert(b)
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	var closers []io.Closer
	b.Cleanup(func() {
		cancel()
		for _, c := range closers {
			c.Close()
		}
		wg.Wait()
	})
	listen := func() net.Listener {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		closers = append(closers, l)
		return l
	}

	// The gateway hop: TLS in, plain TCP to the target.
	dialUpstream := func(ctx context.Context) (io.ReadWriteCloser, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", target)
		if err != nil {
			return nil, err
		}
		return c.(*net.TCPConn), nil
	}
	if gatewayHop {
		gl := listen()
		serve(&wg, gl, func(c net.Conn) {
			tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
			if err := tc.HandshakeContext(ctx); err != nil {
				tc.Close()
				return
			}
			t, err := net.Dial("tcp", target)
			if err != nil {
				tc.Close()
				return
			}
			splice.Join(tc, t.(*net.TCPConn))
		})
		dialUpstream = func(ctx context.Context) (io.ReadWriteCloser, error) {
			d := tls.Dialer{Config: &tls.Config{RootCAs: pool, ServerName: "localhost"}}
			c, err := d.DialContext(ctx, "tcp", gl.Addr().String())
			if err != nil {
				return nil, err
			}
			return c.(*tls.Conn), nil
		}
	}

	// The portal's part: a CONNECT handler that dials and copies.
	pl := listen()
	srv := &http.Server{
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
		HTTP2: &http.HTTP2Config{MaxConcurrentStreams: ceilingMaxStreams, MaxReceiveBufferPerConnection: ceilingConnWindow,
			MaxReadFrameSize: ceilingFrameSize, MaxReceiveBufferPerStream: ceilingStreamWindow},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodConnect {
				http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
				return
			}
			up, err := dialUpstream(r.Context())
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			defer up.Close()
			rc := http.NewResponseController(w)
			w.WriteHeader(http.StatusOK)
			if rc.Flush() != nil {
				return
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				splice.Copy(up, r.Body)
				up.(interface{ CloseWrite() error }).CloseWrite()
			}()
			splice.Copy(&ceilingFlusher{w: w, rc: rc}, up)
			<-done
		}),
	}
	closers = append(closers, srv)
	wg.Add(1)
	go func() {
		defer wg.Done()
		srv.ServeTLS(pl, "", "")
	}()

	// The client's part: one TLS connection, one CONNECT stream per local
	// connection.
	t1 := &http.Transport{HTTP2: &http.HTTP2Config{MaxReceiveBufferPerStream: ceilingStreamWindow}}
	t2, err := http2.ConfigureTransports(t1)
	if err != nil {
		b.Fatal(err)
	}
	t2.StrictMaxConcurrentStreams = true
	tc, err := tls.Dial("tcp", pl.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "localhost", NextProtos: []string{"h2"}})
	if err != nil {
		b.Fatal(err)
	}
	closers = append(closers, tc)
	cc, err := t2.NewClientConn(tc)
	if err != nil {
		b.Fatal(err)
	}
	base := "https://" + pl.Addr().String()
	ll := listen()
	serve(&wg, ll, func(c net.Conn) {
		defer c.Close()
		pr, pw := io.Pipe()
		req, _ := http.NewRequestWithContext(ctx, http.MethodConnect, base, pr)
		resp, err := cc.RoundTrip(req)
		if err != nil {
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			splice.Copy(pw, c)
			pw.Close()
		}()
		splice.Copy(c, resp.Body)
		c.(*net.TCPConn).CloseWrite()
		<-done
	})
	return ll.Addr().String()
}

// serve accepts on l until it is closed, each connection handled in its
// own goroutine that wg waits for.
func serve(wg *sync.WaitGroup, l net.Listener, handle func(net.Conn)) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				handle(c)
			}()
		}
	}()
}

// ceilingFlusher flushes each write, as the portal's tunnel handler does.
type ceilingFlusher struct {
	w  io.Writer
	rc *http.ResponseController
}

func (f *ceilingFlusher) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err != nil {
		return n, err
	}
	return n, f.rc.Flush()
}

// ceilingCert makes a self-signed ECDSA P-256 certificate for localhost.
func ceilingCert(b *testing.B) (tls.Certificate, *x509.CertPool) {
	b.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		b.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}
