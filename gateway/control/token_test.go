package control

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/keyway-dev/keyway/gateway/metrics"
	"github.com/keyway-dev/keyway/gateway/wire"
)

// TestTokens: the gateway gets its first token, keeps it on disk, renews
// it at two thirds of its life and when the portal asks, and reports a
// failed renewal with its next request until one gets through.
func TestTokens(t *testing.T) {
	t.Parallel()
	gw := newIdentity(t)
	key := make([]byte, wire.TokenKeySize)
	var life atomic.Int64
	life.Store(int64(600 * time.Millisecond))
	var failing atomic.Bool
	grants := make(chan wire.Token, 16)
	reports := make(chan string, 16)
	nonces := wire.NewNonceCache(1000)
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+wire.TokenPath, func(w http.ResponseWriter, r *http.Request) {
		if _, err := wire.VerifyRequest(r, gw.PublicKey(), time.Now(), nonces); err != nil {
			http.Error(w, `{"error":"`+err.Error()+`"}`, http.StatusUnauthorized)
			return
		}
		if e := r.Header.Get(wire.HeaderTokenRenewError); e != "" {
			reports <- e
		}
		if failing.Load() {
			http.Error(w, `{"error":"portal busy"}`, http.StatusServiceUnavailable)
			return
		}
		now := time.UnixMilli(time.Now().UnixMilli())
		tok := wire.Token{GatewayID: "7", Slot: wire.SlotPrimary, Generation: 1, IssuedAt: now, ExpiresAt: now.Add(time.Duration(life.Load()))}
		json.NewEncoder(w).Encode(wire.TokenGrant{Token: wire.MakeToken(tok, key), Slot: tok.Slot, IssuedAt: tok.IssuedAt, ExpiresAt: tok.ExpiresAt})
		grants <- tok
	})
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	sum := sha256.Sum256(srv.Certificate().Raw)
	path := filepath.Join(t.TempDir(), "access-token.json")
	reg := prometheus.NewRegistry()
	o := Options{PortalURL: srv.URL, GatewayID: "7", Identity: gw, PortalCertSHA256: hex.EncodeToString(sum[:]), TokenPath: path,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: metrics.NewGateway(reg)}
	tokens := NewTokens(o)
	metrics.WatchToken(reg, func() time.Time { return tokens.Current().ExpiresAt })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// A failed first attempt is kept to be reported.
	failing.Store(true)
	if err := tokens.Ensure(ctx); err == nil || !strings.Contains(err.Error(), "portal busy") {
		t.Fatalf("first token from a busy portal: %v", err)
	}
	failing.Store(false)
	if err := tokens.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if r := <-reports; !strings.Contains(r, "HTTP 503") || !strings.Contains(r, "portal busy") {
		t.Fatalf("reported %q", r)
	}
	first := <-grants
	// Both attempts are counted, and the token's expiry is exported.
	if err := testutil.GatherAndCompare(reg, strings.NewReader(fmt.Sprintf(`
# HELP keyway_gateway_token_expiry_timestamp_seconds When the gateway's access token expires, in Unix seconds; 0 while it has none.
# TYPE keyway_gateway_token_expiry_timestamp_seconds gauge
keyway_gateway_token_expiry_timestamp_seconds %d
# HELP keyway_gateway_token_renewals_total Attempts to get or renew the gateway's access token, by outcome (ok, failed; failures are retried).
# TYPE keyway_gateway_token_renewals_total counter
keyway_gateway_token_renewals_total{outcome="failed"} 1
keyway_gateway_token_renewals_total{outcome="ok"} 1
`, first.ExpiresAt.Unix())), "keyway_gateway_token_expiry_timestamp_seconds", "keyway_gateway_token_renewals_total"); err != nil {
		t.Error(err)
	}
	// Kept on disk, for the gateway only.
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", fi, err)
	}
	again := NewTokens(o)
	if err := again.Load(); err != nil || again.Current().Token != tokens.Current().Token {
		t.Fatalf("token loaded from disk: %v", err)
	}

	// A failure is sent with the next request; once one got through,
	// not again.
	failing.Store(true)
	if err := tokens.Renew(ctx); err == nil {
		t.Fatal("renewal from a busy portal worked")
	}
	failing.Store(false)
	req, _ := http.NewRequest("GET", srv.URL, nil)
	sent := tokens.attach(req)
	if req.Header.Get(wire.HeaderTokenRenewError) == "" || req.Header.Get(wire.HeaderGatewayToken) == "" || sent == "" {
		t.Fatalf("request after a failed renewal: %v", req.Header)
	}
	tokens.answered(&http.Response{StatusCode: 200, Header: http.Header{}}, sent)
	req, _ = http.NewRequest("GET", srv.URL, nil)
	if tokens.attach(req); req.Header.Get(wire.HeaderTokenRenewError) != "" {
		t.Fatal("a delivered failure was sent again")
	}

	// Run renews at two thirds of the token's life, again and again.
	done := make(chan struct{})
	go func() { defer close(done); tokens.Run(ctx) }()
	defer func() { cancel(); <-done }()
	deadline := time.After(10 * time.Second)
	prev := first
	for range 2 {
		select {
		case g := <-grants:
			if !g.IssuedAt.After(prev.IssuedAt) {
				t.Fatalf("renewal issued %v, not after %v", g.IssuedAt, prev.IssuedAt)
			}
			prev = g
		case <-deadline:
			t.Fatal("the token was not renewed")
		}
	}
	// The portal asks for a renewal: with tokens of an hour, only the
	// asking can bring one now.
	life.Store(int64(time.Hour))
	for prev.ExpiresAt.Sub(prev.IssuedAt) != time.Hour {
		select {
		case prev = <-grants:
		case <-deadline:
			t.Fatal("no renewal to an hour's token")
		}
	}
	tokens.answered(&http.Response{StatusCode: 200, Header: http.Header{wire.HeaderTokenRenew: {"secondary"}}}, "")
	select {
	case <-grants:
	case <-deadline:
		t.Fatal("the asked renewal did not come")
	}
}
