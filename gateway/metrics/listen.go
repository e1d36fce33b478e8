package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"
)

// ListenAddr completes a --metrics-listen address: a bare port (":9090"
// or "9090") listens on loopback, so that exposing metrics to other
// machines is a choice written out in full ("0.0.0.0:9090").
func ListenAddr(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		if _, perr := net.LookupPort("tcp", addr); perr != nil {
			return "", fmt.Errorf("%q is not an address: give host:port or a port, e.g. 127.0.0.1:9090", addr)
		}
		host, port = "", addr
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

// LoopbackAddr completes a --pprof-listen address like ListenAddr and
// refuses any address other machines could reach: profiles show memory
// contents and cost CPU on demand.
func LoopbackAddr(addr string) (string, error) {
	a, err := ListenAddr(addr)
	if err != nil {
		return "", err
	}
	host, _, _ := net.SplitHostPort(a)
	if host == "localhost" {
		return a, nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return "", fmt.Errorf("%q is not a loopback address: profiling listens on this machine only (127.0.0.1:PORT or [::1]:PORT)", addr)
	}
	return a, nil
}

// PprofHandler serves net/http/pprof on its own mux (never the default
// one).
func PprofHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return mux
}

// Server is a plain HTTP listener for metrics, probes or profiles.
// Close stops it and waits for it.
type Server struct {
	ln   net.Listener
	srv  *http.Server
	done sync.WaitGroup
}

// Timeouts of Server. A CPU profile or trace takes as long as asked
// (?seconds=30 by default), so writes are bounded generously.
const (
	readHeaderTimeout = 5 * time.Second
	writeTimeout      = 5 * time.Minute
)

// Serve listens on addr and serves h until Close.
func Serve(addr string, h http.Handler, logger *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	s := &Server{ln: ln, srv: &http.Server{Handler: h, ReadHeaderTimeout: readHeaderTimeout, WriteTimeout: writeTimeout,
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}}
	s.done.Add(1)
	go func() {
		defer s.done.Done()
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("serve", "addr", ln.Addr().String(), "err", err)
		}
	}()
	return s, nil
}

// Addr is where s listens.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops s within ctx, then drops what is left, and waits.
func (s *Server) Close(ctx context.Context) {
	if err := s.srv.Shutdown(ctx); err != nil {
		s.srv.Close()
	}
	s.done.Wait()
}
