package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/keyway-dev/keyway/gateway/metrics"
	"github.com/keyway-dev/keyway/gateway/wire"
)

// Limits and pacing of token renewal.
const (
	// maxGrant bounds the portal's answer to a renewal.
	maxGrant = 4 << 10
	// renewShare is the share of a token's life after which it is renewed.
	renewNum, renewDen = 2, 3
	// minRetry and maxRetry bound the wait before a failed renewal is
	// tried again; in between it is a twentieth of the token's life.
	minRetry, maxRetry = 500 * time.Millisecond, time.Minute
	// noTokenRetry is the wait before asking again for a first token.
	noTokenRetry = 5 * time.Second
)

// Tokens keeps the gateway's access token: it loads it from and saves it
// atomically to the state directory, sends it with every request to the
// portal, and renews it itself at two thirds of its life (or when the
// portal asks), reporting a failed renewal with the next request.
type Tokens struct {
	url       string
	gatewayID string
	identity  *wire.Identity
	path      string
	client    *http.Client
	logger    *slog.Logger
	metrics   *metrics.Gateway
	now       func() time.Time
	kick      chan struct{}
	// wake tells Run that a token came by another way (Ensure).
	wake chan struct{}

	// renewMu lets one renewal run at a time.
	renewMu sync.Mutex

	mu sync.Mutex
	st tokenState
	// renewErr is the last renewal failure, not yet reported.
	renewErr string
}

// tokenState is the token file: the portal's grant and, by the gateway's
// clock, when to renew it.
type tokenState struct {
	wire.TokenGrant
	RenewAt time.Time `json:"renew_at"`
}

// NewTokens returns the token keeper of o's gateway, keeping its token in
// o.TokenPath.
func NewTokens(o Options) *Tokens {
	return &Tokens{
		url: strings.TrimRight(o.PortalURL, "/") + wire.TokenPath, gatewayID: o.GatewayID, identity: o.Identity, path: o.TokenPath,
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: portalTLS(o)}},
		logger: o.Logger, metrics: o.Metrics, now: time.Now, kick: make(chan struct{}, 1), wake: make(chan struct{}, 1),
	}
}

// Load reads the token kept on disk, if any.
func (t *Tokens) Load() error {
	raw, err := os.ReadFile(t.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read access token: %w", err)
	}
	var st tokenState
	if err := json.Unmarshal(raw, &st); err != nil || st.Token == "" {
		return fmt.Errorf("access token file %s is damaged (the gateway asks for a new token): %v", t.path, err)
	}
	t.mu.Lock()
	t.st = st
	t.mu.Unlock()
	return nil
}

// Has reports whether the gateway has a token.
func (t *Tokens) Has() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.st.Token != ""
}

// Current returns the token in use.
func (t *Tokens) Current() wire.TokenGrant { return t.state().TokenGrant }

// attach adds the token, and an unreported renewal failure, to req. It
// returns the failure sent, for delivered.
func (t *Tokens) attach(req *http.Request) string {
	if t == nil {
		return ""
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.st.Token != "" {
		req.Header.Set(wire.HeaderGatewayToken, t.st.Token)
	}
	if t.renewErr != "" {
		req.Header.Set(wire.HeaderTokenRenewError, t.renewErr)
	}
	return t.renewErr
}

// answered notes the portal's answer to a request attach prepared: a
// reported failure is not sent again, and a renewal the portal asks for
// (or a refusal calls for) is started.
func (t *Tokens) answered(resp *http.Response, sent string) {
	if t == nil {
		return
	}
	if resp.StatusCode/100 == 2 && sent != "" {
		t.mu.Lock()
		if t.renewErr == sent {
			t.renewErr = ""
		}
		t.mu.Unlock()
	}
	// A refused token is renewed at once rather than when due: after an
	// admin pasted the gateway's key again, the portal gives a new one.
	if resp.Header.Get(wire.HeaderTokenRenew) != "" || resp.StatusCode == http.StatusUnauthorized {
		t.Kick()
	}
}

// Kick asks Run to renew now.
func (t *Tokens) Kick() {
	select {
	case t.kick <- struct{}{}:
	default:
	}
}

// Ensure gets a first token unless the gateway has one.
func (t *Tokens) Ensure(ctx context.Context) error {
	t.renewMu.Lock()
	defer t.renewMu.Unlock()
	if t.Has() {
		return nil
	}
	return t.renewLocked(ctx)
}

// Renew gets a new token from the portal and saves it. A failure is kept
// to be reported with the next request.
func (t *Tokens) Renew(ctx context.Context) error {
	t.renewMu.Lock()
	defer t.renewMu.Unlock()
	return t.renewLocked(ctx)
}

func (t *Tokens) renewLocked(ctx context.Context) error {
	err := t.renew(ctx)
	t.metrics.TokenRenewal(err == nil)
	if err != nil {
		msg := err.Error()
		if len(msg) > wire.MaxRenewError {
			msg = msg[:wire.MaxRenewError]
		}
		t.mu.Lock()
		t.renewErr = strings.ToValidUTF8(msg, "?")
		t.mu.Unlock()
	}
	return err
}

func (t *Tokens) renew(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, nil)
	if err != nil {
		return err
	}
	sent := t.attach(req)
	wire.SignRequest(req, t.identity, t.gatewayID, t.now(), wire.EmptyBody)
	resp, err := t.client.Do(req)
	if err != nil {
		return fmt.Errorf("reach portal: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxGrant))
	if err != nil {
		return fmt.Errorf("read the portal's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		json.Unmarshal(body, &e)
		return fmt.Errorf("portal refused to renew the access token (HTTP %d): %s", resp.StatusCode, e.Error)
	}
	var g wire.TokenGrant
	if err := json.Unmarshal(body, &g); err != nil {
		return fmt.Errorf("decode the portal's token: %w", err)
	}
	tok, err := wire.ParseToken(g.Token)
	if err != nil || tok.GatewayID != t.gatewayID {
		return errors.New("the portal sent a token that is not this gateway's")
	}
	// Renewal is scheduled by the gateway's own clock, so a skew between
	// the two clocks does not matter.
	life := tok.ExpiresAt.Sub(tok.IssuedAt)
	st := tokenState{TokenGrant: g, RenewAt: t.now().Add(life * renewNum / renewDen)}
	raw, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(t.path, raw, ".token-*.tmp"); err != nil {
		return fmt.Errorf("save access token: %w", err)
	}
	t.mu.Lock()
	t.st = st
	if t.renewErr == sent {
		t.renewErr = ""
	}
	t.mu.Unlock()
	select {
	case t.wake <- struct{}{}:
	default:
	}
	t.logger.Info("access token renewed", "slot", g.Slot, "expires", g.ExpiresAt, "renew_at", st.RenewAt)
	return nil
}

// Run renews the token when due, when the portal asks, and right away
// when there is none, until ctx ends. A failed renewal is logged and
// retried.
func (t *Tokens) Run(ctx context.Context) {
	timer := time.NewTimer(t.untilDue())
	defer timer.Stop()
	for {
		kicked := false
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-t.kick:
			kicked = true
		case <-t.wake:
		}
		wait := t.untilDue()
		if wait <= 0 || kicked {
			wait = t.attempt(ctx)
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
	}
}

// untilDue is the time until the token is due for renewal; 0 without one.
func (t *Tokens) untilDue() time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.st.Token == "" {
		return 0
	}
	return max(t.st.RenewAt.Sub(t.now()), 0)
}

// attempt renews (or gets a first token) and returns the wait until the
// next attempt: the next renewal, or a retry after a failure.
func (t *Tokens) attempt(ctx context.Context) time.Duration {
	st := t.state()
	var err error
	if st.Token == "" {
		err = t.Ensure(ctx)
	} else {
		err = t.Renew(ctx)
	}
	if ctx.Err() != nil {
		return time.Hour
	}
	if err == nil {
		return t.untilDue()
	}
	life := st.ExpiresAt.Sub(st.IssuedAt)
	retry := min(max(life/20, minRetry), maxRetry)
	if st.Token == "" {
		retry = noTokenRetry
	}
	level := slog.LevelWarn
	if st.Token != "" && !t.now().Before(st.ExpiresAt) {
		level = slog.LevelError
	}
	t.logger.Log(ctx, level, "access token renewal failed; retrying", "err", err, "expires", st.ExpiresAt, "retry_in", retry)
	return retry
}

func (t *Tokens) state() tokenState {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.st
}
