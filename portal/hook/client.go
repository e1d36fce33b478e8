package hook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/keyway-dev/keyway/gateway/tlsconf"
)

// Limits of the configuration an admin may set.
const (
	// MaxInFlightLimit is the largest MaxInFlight an admin may set.
	MaxInFlightLimit = 10000
	// MinSecret is the shortest shared secret accepted: 16 bytes, so a
	// signature cannot be forged by guessing the secret.
	MinSecret = 16
	// maxSecret and maxURL bound what an admin can paste; maxCABundle
	// bounds the CA bundle (a few hundred certificates).
	maxSecret   = 1024
	maxURL      = 2048
	maxCABundle = 1 << 20
)

// Limits of one exchange besides those in hook.go.
const (
	// maxResponseHeader bounds the hook's response headers.
	maxResponseHeader = 64 << 10
	// maxDrain is how much of a refused (non-2xx) answer is read so the
	// connection can be reused; the rest is dropped with the connection.
	maxDrain = 4 << 10
	// idleTimeout closes connections the hook left idle.
	idleTimeout = 90 * time.Second
)

// ErrAbandoned is matched (errors.Is) by Result.Err when the caller's
// context ended before the hook answered: the user left, so nobody waits
// for the decision.
var ErrAbandoned = errors.New("connection abandoned before the hook answered")

// errTimeout is the cause of a call's own deadline, to tell it from the
// caller's.
var errTimeout = errors.New("hook did not answer in time")

// client is one configuration's HTTP client and in-flight count.
type client struct {
	cfg      Config
	http     *http.Client // nil when no URL is set
	inFlight atomic.Int64
	retired  atomic.Bool
}

// validate checks cfg as an admin set it and fills in defaults. Its
// errors are sentences for the admin.
func validate(cfg Config) (Config, error) {
	cfg.URL = strings.TrimSpace(cfg.URL)
	switch {
	case cfg.MaxInFlight == 0:
		cfg.MaxInFlight = DefaultMaxInFlight
	case cfg.MaxInFlight < 1 || cfg.MaxInFlight > MaxInFlightLimit:
		return cfg, fmt.Errorf("maximum calls in flight must be between 1 and %d", MaxInFlightLimit)
	}
	if cfg.Enabled && cfg.URL == "" {
		return cfg, errors.New("enter the hook's HTTPS URL to enable it")
	}
	if cfg.URL != "" {
		if err := checkURL(cfg.URL); err != nil {
			return cfg, err
		}
	}
	switch {
	case cfg.Enabled && cfg.Secret == "":
		return cfg, errors.New("set a shared secret to enable the hook: every request is signed with it")
	case cfg.Secret != "" && len(cfg.Secret) < MinSecret:
		return cfg, fmt.Errorf("the shared secret must be at least %d bytes long", MinSecret)
	case len(cfg.Secret) > maxSecret:
		return cfg, fmt.Errorf("the shared secret must be at most %d bytes long", maxSecret)
	}
	if len(cfg.CABundle) > maxCABundle {
		return cfg, fmt.Errorf("the CA bundle must be at most %d KiB", maxCABundle>>10)
	}
	if _, err := parseCABundle(cfg.CABundle); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// checkURL accepts an absolute https URL with a host and nothing that
// would be sent where the admin does not see it.
func checkURL(raw string) error {
	if len(raw) > maxURL {
		return fmt.Errorf("the hook URL must be at most %d characters", maxURL)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("the hook URL is not a valid URL: %w", err)
	}
	switch {
	case u.Scheme != "https":
		return errors.New("the hook URL must start with https://: requests carry user names and addresses")
	case u.Host == "" || u.Hostname() == "":
		return errors.New("the hook URL has no host name")
	case u.User != nil:
		return errors.New("the hook URL must not contain a user name or password: the shared secret authenticates the portal")
	case u.Fragment != "":
		return errors.New("the hook URL must not contain a #fragment")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("the hook URL's port %q is not a port number", p)
		}
	}
	return nil
}

// parseCABundle reads PEM certificates; nil for an empty bundle.
func parseCABundle(bundle string) ([]*x509.Certificate, error) {
	if strings.TrimSpace(bundle) == "" {
		return nil, nil
	}
	var certs []*x509.Certificate
	rest := []byte(bundle)
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("the CA bundle holds a %q block: only CERTIFICATE blocks belong there", block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d of the CA bundle cannot be read: %w", len(certs)+1, err)
		}
		certs = append(certs, cert)
	}
	if strings.TrimSpace(string(rest)) != "" {
		return nil, errors.New("the CA bundle holds text that is not a PEM certificate (-----BEGIN CERTIFICATE-----)")
	}
	if len(certs) == 0 {
		return nil, errors.New("the CA bundle holds no certificate")
	}
	return certs, nil
}

// newClient builds the HTTP client for a validated cfg, with the TLS
// settings tlsSet.
func newClient(cfg Config, tlsSet tlsconf.Settings) (*client, error) {
	c := &client{cfg: cfg}
	if cfg.URL == "" {
		return c, nil
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		// Without system roots only the bundle is trusted.
		roots = x509.NewCertPool()
	}
	certs, err := parseCABundle(cfg.CABundle)
	if err != nil {
		return nil, err
	}
	for _, cert := range certs {
		roots.AddCert(cert)
	}
	tr := &http.Transport{
		// No proxy from the environment: the hook is the organisation's
		// own endpoint, and a signed request goes only where the admin said.
		Proxy:                  nil,
		DialContext:            (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:        tlsSet.Client(&tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}),
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           cfg.MaxInFlight,
		MaxIdleConnsPerHost:    cfg.MaxInFlight,
		IdleConnTimeout:        idleTimeout,
		MaxResponseHeaderBytes: maxResponseHeader,
	}
	c.http = &http.Client{
		Transport: tr,
		// A redirect would send the signed request elsewhere: a 3xx is a
		// failed call like any other non-2xx.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c, nil
}

// retire marks c replaced; its connections close once its last call ends.
func (c *client) retire() {
	c.retired.Store(true)
	if c.inFlight.Load() == 0 {
		c.closeIdle()
	}
}

func (c *client) closeIdle() {
	if c.http != nil {
		c.http.CloseIdleConnections()
	}
}

// acquire counts a call in flight; false when the maximum is reached.
func (c *client) acquire() bool {
	if c.inFlight.Add(1) > int64(c.cfg.MaxInFlight) {
		c.release()
		return false
	}
	return true
}

func (c *client) release() {
	if c.inFlight.Add(-1) == 0 && c.retired.Load() {
		c.closeIdle()
	}
}

// Sign returns the HeaderSignature value for body sent at ts:
// "v1=" + hex(HMAC-SHA256(secret, "<unix seconds>." + body)).
func Sign(secret string, ts time.Time, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(strconv.FormatInt(ts.Unix(), 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1=" + hex.EncodeToString(m.Sum(nil))
}

// call makes one call with c; x, when not nil, receives the raw exchange.
func (h *Hook) call(ctx context.Context, c *client, req Request, x *Exchange) Result {
	start := time.Now()
	res := h.exchange(ctx, c, req, x)
	res.Elapsed = time.Since(start)
	if !res.Allowed && res.Message == "" {
		res.Message = GenericDenial
	}
	return res
}

// fail is a refusal before the hook was reached; called one after.
func fail(reason Reason, err error) Result {
	return Result{Reason: reason, Err: err}
}

func called(reason Reason, err error) Result {
	return Result{Reason: reason, Called: true, Err: err}
}

func (h *Hook) exchange(ctx context.Context, c *client, req Request, x *Exchange) Result {
	if c.http == nil || c.cfg.Secret == "" {
		return fail(ReasonServiceError, errors.New("call hook: no URL and shared secret configured"))
	}
	if !c.acquire() {
		return fail(ReasonThrottled, fmt.Errorf("call hook: %d calls already in flight", c.cfg.MaxInFlight))
	}
	defer c.release()

	req.SchemaVersion = SchemaVersion
	// The hook sees arrays, never null.
	if req.Groups == nil {
		req.Groups = []string{}
	}
	if req.ResourceTags == nil {
		req.ResourceTags = []string{}
	}
	body, err := json.Marshal(req)
	if err != nil {
		return fail(ReasonServiceError, fmt.Errorf("encode hook request: %w", err))
	}
	ctx, cancel := context.WithTimeoutCause(ctx, h.timeout, errTimeout)
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return fail(ReasonServiceError, fmt.Errorf("build hook request: %w", err))
	}
	ts := h.now()
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Accept", "application/json")
	hr.Header.Set("User-Agent", "Keyway-hook/"+SchemaVersion)
	hr.Header.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	hr.Header.Set(HeaderSignature, Sign(c.cfg.Secret, ts, body))
	if x != nil {
		x.Request = dumpRequest(hr, body)
	}

	resp, err := c.http.Do(hr)
	if err != nil {
		return failed(ctx, "call hook", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		head, _ := io.ReadAll(io.LimitReader(resp.Body, maxDrain+1))
		if x != nil {
			x.Response = dumpResponse(resp, head[:min(len(head), maxDrain)], len(head) > maxDrain)
		}
		if resp.StatusCode == http.StatusTooManyRequests {
			return called(ReasonThrottled, errors.New("hook answered 429 Too Many Requests"))
		}
		return called(ReasonOther, fmt.Errorf("hook answered %s", resp.Status))
	}
	if resp.ContentLength > MaxResponse {
		if x != nil {
			x.Response = dumpResponse(resp, nil, true)
		}
		return called(ReasonInvalid, fmt.Errorf("hook answer of %d bytes is over the limit of %d", resp.ContentLength, MaxResponse))
	}
	// One byte over the limit tells a long answer from one that fits.
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponse+1))
	if x != nil {
		x.Response = dumpResponse(resp, data[:min(len(data), MaxResponse)], len(data) > MaxResponse)
	}
	if err != nil {
		return failed(ctx, "read hook answer", err)
	}
	if len(data) > MaxResponse {
		return called(ReasonInvalid, fmt.Errorf("hook answer is over the limit of %d bytes", MaxResponse))
	}
	ans, err := parseResponse(data)
	if err != nil {
		return called(ReasonInvalid, err)
	}
	res := Result{Allowed: ans.Allow, Posture: ans.Posture, Called: true}
	if !ans.Allow {
		res.Reason = ReasonDenied
		res.Message = ans.Message
	}
	return res
}

// failed classifies an error of the HTTP exchange: the call's own
// deadline, the caller leaving, or the network or TLS failing.
func failed(ctx context.Context, doing string, err error) Result {
	switch cause := context.Cause(ctx); {
	case errors.Is(cause, errTimeout):
		return called(ReasonTimedOut, fmt.Errorf("%s: %w", doing, errTimeout))
	case cause != nil:
		return called(ReasonOther, fmt.Errorf("%s: %w: %w", doing, ErrAbandoned, cause))
	}
	return called(ReasonOther, fmt.Errorf("%s: %w", doing, err))
}

// dumpRequest writes the request as sent, for the Settings page.
func dumpRequest(r *http.Request, body []byte) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s\n", r.Method, r.URL)
	writeHeader(&b, r.Header)
	b.WriteString("\n")
	b.Write(body)
	return b.String()
}

// dumpResponse writes the status, headers and (the start of) the body.
func dumpResponse(r *http.Response, body []byte, cut bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s\n", r.Proto, r.Status)
	writeHeader(&b, r.Header)
	b.WriteString("\n")
	b.Write(body)
	if cut {
		b.WriteString("\n… (not shown: longer than the portal reads)")
	}
	return b.String()
}

func writeHeader(b *strings.Builder, h http.Header) {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, v := range h[k] {
			fmt.Fprintf(b, "%s: %s\n", k, v)
		}
	}
}
