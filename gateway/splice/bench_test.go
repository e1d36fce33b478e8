package splice

import (
	"crypto/tls"
	"io"
	"net"
	"runtime"
	"testing"
)

// copiers are what BenchmarkProxy compares.
var copiers = []struct {
	name string
	copy func(dst io.Writer, src io.Reader) (int64, error)
}{
	{"io.Copy", func(dst io.Writer, src io.Reader) (int64, error) { return io.Copy(dst, src) }},
	{"io.Copy 32KiB", func(dst io.Writer, src io.Reader) (int64, error) {
		return io.Copy(struct{ io.Writer }{dst}, struct{ io.Reader }{src})
	}},
	{"splice.Copy", Copy},
}

// BenchmarkProxy measures the throughput of one proxy hop on loopback
// (source → proxy → sink) with Copy beside io.Copy, in one run:
//
//	go test -run '^$' -bench Proxy -benchtime 4000x -count 3 ./gateway/splice/
//
// Over plain TCP, io.Copy between two *net.TCPConn uses splice(2) and
// never copies through user space; "io.Copy 32KiB" hides that, so it
// copies with io.Copy's own 32 KiB buffer. "tls" has the source speak TLS
// to the proxy, the gateway's case (portal's TLS ↔ target's TCP): there
// io.Copy always copies through a 32 KiB buffer, and reads return at most
// one TLS record (16 KiB).
func BenchmarkProxy(b *testing.B) {
	for _, proto := range []string{"tcp", "tls"} {
		for _, c := range copiers {
			b.Run(proto+"/"+c.name, func(b *testing.B) { benchProxy(b, proto == "tls", c.copy) })
		}
	}
}

func benchProxy(b *testing.B, useTLS bool, copyFn func(io.Writer, io.Reader) (int64, error)) {
	const chunk = 64 << 10
	sinkLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer sinkLn.Close()
	var proxyLn net.Listener
	proxyLn, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer proxyLn.Close()
	dial := func() (net.Conn, error) { return net.Dial("tcp", proxyLn.Addr().String()) }
	if useTLS {
		cert := testCert(b)
		proxyLn = tls.NewListener(proxyLn, &tls.Config{Certificates: []tls.Certificate{cert}})
		dial = func() (net.Conn, error) {
			return tls.Dial("tcp", proxyLn.Addr().String(), &tls.Config{InsecureSkipVerify: true})
		}
	}
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
	src, err := dial()
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

// BenchmarkIdleJoin measures the memory of idle joined streams: 1000 Joins
// of loopback TCP pairs that have exchanged a few bytes, then wait. It
// reports heap and goroutine stack per Join (both directions, both
// goroutines; not the kernel's socket buffers), beside two io.Copy
// goroutines with their 32 KiB buffers (splice(2) hidden, as with TLS):
//
//	go test -run '^$' -bench IdleJoin -benchtime 1x ./gateway/splice/
func BenchmarkIdleJoin(b *testing.B) {
	ioCopyJoin := func(a, c io.ReadWriteCloser) {
		done := make(chan struct{})
		go func() {
			io.Copy(struct{ io.Writer }{c}, struct{ io.Reader }{a})
			c.Close()
			close(done)
		}()
		io.Copy(struct{ io.Writer }{a}, struct{ io.Reader }{c})
		a.Close()
		<-done
	}
	b.Run("splice.Join", func(b *testing.B) {
		benchIdleJoin(b, func(a, c io.ReadWriteCloser) { Join(a, c) })
	})
	b.Run("io.Copy", func(b *testing.B) { benchIdleJoin(b, ioCopyJoin) })
}

func benchIdleJoin(b *testing.B, join func(a, b io.ReadWriteCloser)) {
	const joins = 1000
	for range b.N {
		type ends struct{ client, server net.Conn }
		all := make([]ends, 0, joins)
		done := make(chan struct{}, joins)
		inside := make([]net.Conn, 0, 2*joins)
		for range joins {
			client, a := tcpPair(b)
			bb, server := tcpPair(b)
			all = append(all, ends{client, server})
			inside = append(inside, a, bb)
		}
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		for i := range joins {
			go func() {
				join(inside[2*i], inside[2*i+1])
				done <- struct{}{}
			}()
		}
		msg := []byte("ping")
		got := make([]byte, len(msg))
		for _, e := range all {
			if _, err := e.client.Write(msg); err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(e.server, got); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/joins, "heap-B/join")
		b.ReportMetric(float64(after.StackInuse-before.StackInuse)/joins, "stack-B/join")
		for _, e := range all {
			e.client.Close()
			e.server.Close()
		}
		for range joins {
			<-done
		}
	}
}
