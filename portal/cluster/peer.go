package cluster

import (
	"context"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strconv"
	"time"

	"github.com/keyway-dev/keyway/gateway/wire"
)

// peerInfo is the HKDF info of the replicas' shared key, so that it is
// unrelated to the other keys derived from the secrets key.
const peerInfo = "keyway cluster peer v1"

// Headers a replica sets on a forwarded request; the internal listener
// takes them only from an authenticated replica.
const (
	headerViewer     = "Keyway-Viewer"
	headerClientAddr = "Keyway-Client-Addr"
)

// Internal listener limits.
const (
	peerDialTimeout   = 10 * time.Second
	peerHeaderTimeout = 10 * time.Second
	maxPeerHeader     = 16 << 10
)

// PeerIdentity is the TLS identity every replica derives from the shared
// secrets key: the internal listener accepts only clients presenting it,
// and replicas accept only an internal listener presenting it. Whoever
// lacks the secrets key can neither call a replica's internal listener
// nor pose as one.
func PeerIdentity(secretsKey []byte) (*wire.Identity, error) {
	if len(secretsKey) < 32 {
		return nil, errors.New("cluster: the secrets key is too short to derive the replicas' key")
	}
	seed, err := hkdf.Key(sha256.New, secretsKey, nil, peerInfo, ed25519.SeedSize)
	if err != nil {
		return nil, fmt.Errorf("cluster: derive the replicas' key: %w", err)
	}
	return wire.NewIdentity(ed25519.NewKeyFromSeed(seed))
}

// WatchHandler serves a watch forwarded from another replica: viewer is
// the user id and clientAddr the browser's address as that replica saw
// them (httpui.Server.ForwardedWatch).
type WatchHandler func(w http.ResponseWriter, r *http.Request, sessionID string, viewer int64, clientAddr string)

// InternalServer is a replica's internal listener (--cluster-listen).
type InternalServer struct {
	srv  *http.Server
	done chan error
}

// ServeInternal serves the routes other replicas call, on ln, over TLS
// with mutual authentication by the replicas' shared key (PeerIdentity).
// Close it with Close.
func ServeInternal(ln net.Listener, id *wire.Identity, watch WatchHandler, logger *slog.Logger) *InternalServer {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /internal/sessions/{id}/watch", func(w http.ResponseWriter, r *http.Request) {
		viewer, err := strconv.ParseInt(r.Header.Get(headerViewer), 10, 64)
		if err != nil || viewer <= 0 {
			http.Error(w, "no viewer", http.StatusBadRequest)
			return
		}
		addr, err := netip.ParseAddr(r.Header.Get(headerClientAddr))
		if err != nil {
			http.Error(w, "no client address", http.StatusBadRequest)
			return
		}
		watch(w, r, r.PathValue("id"), viewer, addr.String())
	})
	own := id.PublicKey()
	tlsCfg := wire.ServerTLSConfig(id, func(k ed25519.PublicKey) bool { return own.Equal(k) })
	s := &InternalServer{done: make(chan error, 1), srv: &http.Server{Handler: mux, TLSConfig: tlsCfg,
		ReadHeaderTimeout: peerHeaderTimeout, MaxHeaderBytes: maxPeerHeader,
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}}
	go func() { s.done <- s.srv.ServeTLS(ln, "", "") }()
	return s
}

// Close stops the internal listener and the requests it carries.
func (s *InternalServer) Close() {
	s.srv.Close()
	<-s.done
}

// peerTransport dials other replicas' internal listeners, pinning the
// shared key. HTTP/1.1 only: WebSocket upgrades need it.
func peerTransport(id *wire.Identity) *http.Transport {
	return &http.Transport{
		TLSClientConfig:       wire.ClientTLSConfig(id, id.PublicKey()),
		DialContext:           (&net.Dialer{Timeout: peerDialTimeout}).DialContext,
		TLSHandshakeTimeout:   peerDialTimeout,
		ResponseHeaderTimeout: peerHeaderTimeout,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       time.Minute,
	}
}

// ForwardWatch implements httpui.Cluster: it carries a watch WebSocket to
// replica's internal listener, which runs the watch (and audits it) as
// the viewer. Only the WebSocket's own headers go along: no cookie.
func (r *Registry) ForwardWatch(w http.ResponseWriter, req *http.Request, replica, sessionID string, viewer int64, clientAddr string) {
	if r.transport == nil {
		http.Error(w, "this replica cannot reach the others: no shared key", http.StatusBadGateway)
		return
	}
	ctx, cancel := context.WithTimeout(req.Context(), peerDialTimeout)
	addr, err := r.c.address(ctx, replica)
	cancel()
	if err != nil {
		r.c.logger.Warn("forward a watch", "session", sessionID, "replica", replica, "err", err)
		http.Error(w, "That terminal session is not running.", http.StatusNotFound)
		return
	}
	target := &url.URL{Scheme: "https", Host: addr, Path: "/internal/sessions/" + url.PathEscape(sessionID) + "/watch"}
	proxy := &httputil.ReverseProxy{
		Transport: r.transport,
		Rewrite: func(pr *httputil.ProxyRequest) {
			out := pr.Out
			out.URL = target
			out.Host = addr
			for k := range out.Header {
				switch http.CanonicalHeaderKey(k) {
				case "Connection", "Upgrade", "Sec-Websocket-Key", "Sec-Websocket-Version", "Sec-Websocket-Extensions", "Sec-Websocket-Protocol":
				default:
					out.Header.Del(k)
				}
			}
			out.Header.Set(headerViewer, strconv.FormatInt(viewer, 10))
			out.Header.Set(headerClientAddr, clientAddr)
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			r.c.logger.Warn("forward a watch", "session", sessionID, "replica", replica, "address", addr, "err", err)
			http.Error(w, "The replica running this session could not be reached.", http.StatusBadGateway)
		},
	}
	proxy.ServeHTTP(w, req)
}
