package splice

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"
)

// countingPool lends large buffers and counts them.
type countingPool struct {
	mu   sync.Mutex
	gets int
	out  int // lent and not yet returned
	// returned, if set, is signalled (without blocking) on every put.
	returned chan struct{}
}

func (p *countingPool) get() *[]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gets++
	p.out++
	b := make([]byte, largeSize)
	return &b
}

func (p *countingPool) put(*[]byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.out--
	select {
	case p.returned <- struct{}{}:
	default:
	}
}

func (p *countingPool) counts() (gets, out int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.gets, p.out
}

// chunkReader returns its data in reads of the given sizes, then EOF.
type chunkReader struct {
	data  []byte
	sizes []int
	seen  []int // len(p) of each read
}

func (r *chunkReader) Read(p []byte) (int, error) {
	r.seen = append(r.seen, len(p))
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(r.data))
	if len(r.sizes) > 0 {
		n = min(n, r.sizes[0])
		r.sizes = r.sizes[1:]
	}
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

// TestCopyBuffers checks which buffer each read gets: small until a read
// fills it, large while reads fill it, small again after a short read.
func TestCopyBuffers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		sizes []int
		want  []int // buffer length offered to each read
	}{
		{"interactive stream stays small", []int{10, 100, 2047}, []int{smallSize, smallSize, smallSize, smallSize}},
		{"full small read takes the large buffer", []int{smallSize, 5}, []int{smallSize, largeSize, smallSize}},
		{"bulk keeps it while reads fill it", []int{smallSize, largeSize, largeSize, 100, 7},
			[]int{smallSize, largeSize, largeSize, largeSize, smallSize, smallSize}},
		{"short large read gives it back", []int{smallSize, 1000, smallSize, 3},
			[]int{smallSize, largeSize, smallSize, largeSize, smallSize}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			total := 0
			for _, n := range tc.sizes {
				total += n
			}
			data := make([]byte, total)
			rand.Read(data)
			src := &chunkReader{data: data, sizes: tc.sizes}
			pool := &countingPool{}
			var dst bytes.Buffer
			n, err := copyWith(pool, &dst, src)
			if err != nil || n != int64(total) || !bytes.Equal(dst.Bytes(), data) {
				t.Fatalf("copied %d of %d bytes, err %v, equal %v", n, total, err, bytes.Equal(dst.Bytes(), data))
			}
			if !slicesEqual(src.seen, tc.want) {
				t.Fatalf("read buffer sizes %v, want %v", src.seen, tc.want)
			}
			if _, out := pool.counts(); out != 0 {
				t.Fatalf("%d large buffers not returned", out)
			}
		})
	}
}

func slicesEqual(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

type failWriter struct{ n int }

func (w failWriter) Write(p []byte) (int, error) { return min(w.n, len(p)), nil }

func TestCopyErrors(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	for _, tc := range []struct {
		name string
		dst  io.Writer
		src  io.Reader
		want error
	}{
		{"read error", io.Discard, io.MultiReader(strings.NewReader("abc"), iotest.ErrReader(boom)), boom},
		{"short write", failWriter{n: 1}, strings.NewReader("abc"), io.ErrShortWrite},
		{"data with EOF", io.Discard, iotest.DataErrReader(strings.NewReader("abc")), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pool := &countingPool{}
			if _, err := copyWith(pool, tc.dst, tc.src); !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			if _, out := pool.counts(); out != 0 {
				t.Fatalf("%d large buffers not returned", out)
			}
		})
	}
}

// pair returns the two ends of a connection over loopback: the outside
// end (a client's) and the inside end Join gets.
type pair func(t testing.TB) (outside, inside net.Conn)

func tcpPair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	out, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	in := <-accepted
	if in == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { out.Close(); in.Close() })
	return out, in
}

// testCert is a self-signed certificate; clients skip verifying it.
func testCert(t testing.TB) tls.Certificate {
	t.Helper()
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func tlsPair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	out, in := tcpPair(t)
	server := tls.Server(in, &tls.Config{Certificates: []tls.Certificate{testCert(t)}})
	client := tls.Client(out, &tls.Config{InsecureSkipVerify: true})
	return client, server
}

func closeWrite(t testing.TB, c net.Conn) {
	t.Helper()
	if err := c.(closeWriter).CloseWrite(); err != nil {
		t.Fatalf("close write: %v", err)
	}
}

type joined struct {
	aToB, bToA int64
	err        error
}

func startJoin(pool buffers, a, b net.Conn) <-chan joined {
	done := make(chan joined, 1)
	go func() {
		var j joined
		j.aToB, j.bToA, j.err = joinWith(pool, a, b)
		done <- j
	}()
	return done
}

func waitJoin(t *testing.T, done <-chan joined) joined {
	t.Helper()
	select {
	case j := <-done:
		return j
	case <-time.After(20 * time.Second):
		t.Fatal("Join did not return")
	}
	return joined{}
}

// TestJoinHalfClose checks that a client that stops sending still gets the
// server's answer, over TCP and TLS on either side.
func TestJoinHalfClose(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		client pair // client ↔ a
		server pair // b ↔ server
	}{
		{"tcp to tcp", tcpPair, tcpPair},
		{"tls to tcp", tlsPair, tcpPair},
		{"tcp to tls", tcpPair, tlsPair},
		{"tls to tls", tlsPair, tlsPair},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			client, a := tc.client(t)
			b, server := tc.server(t)
			pool := &countingPool{}
			done := startJoin(pool, a, b.(net.Conn))
			const request, response = "the whole request", "the answer, sent after the request ended"
			if _, err := io.WriteString(client, request); err != nil {
				t.Fatal(err)
			}
			closeWrite(t, client)
			got, err := io.ReadAll(server)
			if err != nil || string(got) != request {
				t.Fatalf("server read %q, %v", got, err)
			}
			if _, err := io.WriteString(server, response); err != nil {
				t.Fatalf("the server could not answer after the client's half-close: %v", err)
			}
			closeWrite(t, server)
			got, err = io.ReadAll(client)
			if err != nil || string(got) != response {
				t.Fatalf("client read %q, %v", got, err)
			}
			j := waitJoin(t, done)
			if j.err != nil || j.aToB != int64(len(request)) || j.bToA != int64(len(response)) {
				t.Fatalf("Join returned %+v", j)
			}
			// Join closed both of its sides.
			if _, err := a.Write([]byte("x")); err == nil {
				t.Fatal("a still open after Join")
			}
			if _, err := b.Write([]byte("x")); err == nil {
				t.Fatal("b still open after Join")
			}
		})
	}
}

// TestJoinEnds checks the other ways a Join ends.
func TestJoinEnds(t *testing.T) {
	t.Parallel()
	t.Run("a side without CloseWrite ends both", func(t *testing.T) {
		t.Parallel()
		client, a := tcpPair(t)
		b, server := net.Pipe()
		t.Cleanup(func() { server.Close() })
		done := startJoin(&countingPool{}, a, b)
		io.WriteString(client, "bye")
		closeWrite(t, client)
		got, _ := io.ReadAll(server)
		if string(got) != "bye" {
			t.Fatalf("server read %q", got)
		}
		if got, err := io.ReadAll(client); err != nil || len(got) != 0 {
			t.Fatalf("client read %q, %v; want the end at once", got, err)
		}
		if j := waitJoin(t, done); j.err != nil || j.aToB != 3 {
			t.Fatalf("Join returned %+v", j)
		}
	})
	t.Run("an error ends both and is returned", func(t *testing.T) {
		t.Parallel()
		client, a := tcpPair(t)
		b, server := tcpPair(t)
		done := startJoin(&countingPool{}, a, b)
		io.WriteString(client, "hello")
		buf := make([]byte, 5)
		if _, err := io.ReadFull(server, buf); err != nil {
			t.Fatal(err)
		}
		server.(*net.TCPConn).SetLinger(0) // close with a reset
		server.Close()
		// The client, still sending, learns at once: its side closes.
		client.SetReadDeadline(time.Now().Add(20 * time.Second))
		if _, err := io.ReadAll(client); err != nil && !errors.Is(err, net.ErrClosed) && !isReset(err) {
			t.Fatalf("client: %v", err)
		}
		if j := waitJoin(t, done); j.err == nil || !isReset(j.err) {
			t.Fatalf("Join returned %+v, want the reset", j)
		}
	})
	t.Run("closing a side ends the join", func(t *testing.T) {
		t.Parallel()
		_, a := tcpPair(t)
		b, _ := tcpPair(t)
		done := startJoin(&countingPool{}, a, b)
		a.Close()
		waitJoin(t, done)
	})
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

// TestIdleJoinHoldsNoLargeBuffer checks that a stream holds a large buffer
// only while bulk data flows: not after it, and never for small messages.
func TestIdleJoinHoldsNoLargeBuffer(t *testing.T) {
	t.Parallel()
	client, a := tcpPair(t)
	b, server := tcpPair(t)
	go func() { // an echo server; it ends when the client does
		io.Copy(server, server)
		server.(closeWriter).CloseWrite()
	}()
	pool := &countingPool{returned: make(chan struct{}, 1)}
	done := startJoin(pool, a, b)
	defer func() {
		client.Close()
		waitJoin(t, done)
	}()

	echo := func(msg []byte) {
		t.Helper()
		errc := make(chan error, 1)
		go func() {
			_, err := client.Write(msg)
			errc <- err
		}()
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(client, got); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("echo of %d bytes: %v", len(msg), err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	small := bytes.Repeat([]byte("x"), 200)
	for range 50 {
		echo(small)
	}
	if gets, _ := pool.counts(); gets != 0 {
		t.Fatalf("small messages took %d large buffers", gets)
	}

	bulk := make([]byte, 4<<20)
	rand.Read(bulk)
	echo(bulk)
	if gets, _ := pool.counts(); gets == 0 {
		t.Fatal("bulk data never took a large buffer")
	}
	// After the burst, a short message: the next reads are short, so
	// both directions give their large buffers back and wait small.
	echo(small)
	deadline := time.After(20 * time.Second)
	for {
		_, out := pool.counts()
		if out == 0 {
			break
		}
		select {
		case <-pool.returned:
		case <-deadline:
			t.Fatalf("an idle join holds %d large buffers", out)
		}
	}
}
