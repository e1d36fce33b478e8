package httpui

import (
	"crypto/tls"
	"io"
	"log"
	"net/http"
	"time"
)

// Timeouts bound how slowly a browser or gateway may send. Zero fields
// take the defaults below.
type Timeouts struct {
	// Header bounds the request line and headers.
	Header time.Duration
	// Body bounds a whole request, headers and body, except streamed
	// uploads and WebSockets.
	Body time.Duration
	// UploadIdle is the longest pause within a streamed upload (files,
	// recordings), which may take hours in all.
	UploadIdle time.Duration
	// KeepAlive is how long an idle connection is kept between requests.
	KeepAlive time.Duration
}

// Default timeouts. A form post is at most maxFormBody (1 MiB), which a
// 50 kB/s link sends well within defaultBodyTimeout.
const (
	defaultHeaderTimeout     = 10 * time.Second
	defaultBodyTimeout       = 30 * time.Second
	defaultUploadIdleTimeout = 30 * time.Second
	defaultKeepAlive         = 2 * time.Minute
	// maxHTTP2Streams bounds the requests one HTTP/2 connection may have
	// in flight (Go's default is 250): a page load needs a few dozen, but a
	// native client carries every tunnelled TCP connection of its device
	// as one stream of a single connection (client_streams_per_device is
	// 256 by default).
	maxHTTP2Streams = 1024
	// http2ConnWindow is how much a client may send on one HTTP/2
	// connection before the portal has passed it on. Larger than a
	// stream's window (1 MiB, Go's default), so that one tunnel whose
	// target stops reading does not stall the others; it is a window,
	// not memory taken up front.
	http2ConnWindow = 32 << 20
	// http2FrameSize is the largest HTTP/2 frame the portal reads, the
	// protocol's minimum. Go's HTTP/2 client keeps a send buffer per
	// stream as large as this allows (512 KiB at Go's default of 1 MiB),
	// which 1,000 idle tunnel streams cannot afford; 16 KiB frames cost
	// bulk streams nothing measurable.
	http2FrameSize = 16 << 10
	// http2StreamWindow is how much a client may send on one stream
	// before the portal has passed it on (Go's default is 1 MiB). Every
	// stream of a native client shares one connection, whose frames the
	// portal reads in order: a bulk tunnel with a full window ahead of a
	// small request delays it by that window's time on the wire, which at
	// the ~100 MB/s a tunnel moves here was 8-10 ms at 1 MiB and about
	// 2 ms at 256 KiB (docs/benchmarks.md).
	http2StreamWindow = 256 << 10
)

func (t Timeouts) withDefaults() Timeouts {
	for _, f := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&t.Header, defaultHeaderTimeout}, {&t.Body, defaultBodyTimeout}, {&t.UploadIdle, defaultUploadIdleTimeout}, {&t.KeepAlive, defaultKeepAlive}} {
		if *f.v <= 0 {
			*f.v = f.def
		}
	}
	return t
}

// HTTPServer returns the http.Server that serves s to browsers and
// gateways, with its timeouts and HTTP/2 limits.
func (s *Server) HTTPServer(tlsConf *tls.Config, errorLog *log.Logger) *http.Server {
	t := s.Timeouts.withDefaults()
	return &http.Server{
		Handler:           s,
		TLSConfig:         tlsConf,
		ReadHeaderTimeout: t.Header,
		// ReadTimeout cuts a body sent slowly. Streamed uploads move their
		// deadline as they progress (uploadBody), and WebSocket upgrades
		// clear it (gorilla/websocket does on Upgrade).
		ReadTimeout: t.Body,
		IdleTimeout: t.KeepAlive,
		ErrorLog:    errorLog,
		HTTP2: &http.HTTP2Config{MaxConcurrentStreams: maxHTTP2Streams, MaxReceiveBufferPerConnection: http2ConnWindow,
			MaxReadFrameSize:          http2FrameSize,
			MaxReceiveBufferPerStream: http2StreamWindow},
	}
}

// uploadBody is a streamed upload's body: before each read it moves the
// connection's read deadline to UploadIdle ahead, so an upload may take
// as long as it needs while it keeps sending.
type uploadBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	idle time.Duration
	// set is when the deadline was last moved: moving it at most every
	// idle/8 keeps it at least 7/8 idle ahead of any read.
	set time.Time
}

func (b *uploadBody) Read(p []byte) (int, error) {
	b.moveDeadline()
	return b.ReadCloser.Read(p)
}

// moveDeadline sets the read deadline idle ahead, unless it was moved
// within the last idle/8.
func (b *uploadBody) moveDeadline() {
	if now := time.Now(); now.Sub(b.set) >= b.idle/8 {
		// An error means the connection cannot take deadlines (a test
		// recorder); the server's own timeout then still applies.
		if b.rc.SetReadDeadline(now.Add(b.idle)) == nil {
			b.set = now
		}
	}
}
