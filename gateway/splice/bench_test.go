package splice

import (
	"io"
	"net"
	"testing"
)

// BenchmarkProxy measures the throughput of one TCP proxy hop on loopback
// (source → proxy → sink) with Copy beside io.Copy, in one run:
//
//	go test -run '^$' -bench Proxy -benchtime 2000x ./gateway/splice/
//
// io.Copy between two *net.TCPConn uses splice(2) and never copies through
// user space; "io.Copy 32KiB" hides that, as a TLS side does (the
// gateway's case: tls.Conn ↔ target), so it copies with io.Copy's own 32
// KiB buffer.
func BenchmarkProxy(b *testing.B) {
	for _, bc := range []struct {
		name string
		copy func(dst io.Writer, src io.Reader) (int64, error)
	}{
		{"io.Copy", func(dst io.Writer, src io.Reader) (int64, error) { return io.Copy(dst, src) }},
		{"io.Copy 32KiB", func(dst io.Writer, src io.Reader) (int64, error) {
			return io.Copy(struct{ io.Writer }{dst}, struct{ io.Reader }{src})
		}},
		{"splice.Copy", Copy},
	} {
		b.Run(bc.name, func(b *testing.B) { benchProxy(b, bc.copy) })
	}
}

func benchProxy(b *testing.B, copyFn func(io.Writer, io.Reader) (int64, error)) {
	const chunk = 64 << 10
	sinkLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer sinkLn.Close()
	proxyLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer proxyLn.Close()
	received := make(chan int64, 1)
	go func() {
		c, err := sinkLn.Accept()
		if err != nil {
			received <- -1
			return
		}
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		received <- n
	}()
	proxied := make(chan error, 1)
	go func() {
		in, err := proxyLn.Accept()
		if err != nil {
			proxied <- err
			return
		}
		defer in.Close()
		out, err := net.Dial("tcp", sinkLn.Addr().String())
		if err != nil {
			proxied <- err
			return
		}
		_, err = copyFn(out, in)
		out.Close()
		proxied <- err
	}()
	src, err := net.Dial("tcp", proxyLn.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, chunk)
	b.SetBytes(chunk)
	b.ResetTimer()
	for range b.N {
		if _, err := src.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	src.Close()
	if err := <-proxied; err != nil {
		b.Fatal(err)
	}
	if n := <-received; n != int64(b.N)*chunk {
		b.Fatalf("sink received %d bytes, want %d", n, int64(b.N)*chunk)
	}
}
