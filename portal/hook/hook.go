// Package hook calls the connection authorization hook: an HTTPS endpoint
// of the organisation's that approves or denies every new connection,
// synchronously, failing closed.
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
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// SchemaVersion is the version of the request and response schema.
const SchemaVersion = "v1"

// Limits of the exchange with the hook.
const (
	// Timeout bounds a call; admins cannot change it (tests can, with
	// WithTimeout).
	Timeout = 30 * time.Second
	// MaxResponse bounds the hook's answer; a longer one is invalid.
	MaxResponse = 64 << 10
	// DefaultMaxInFlight is how many calls may wait on the hook at once
	// unless the admin sets another number.
	DefaultMaxInFlight = 50
	// MaxMessage and MaxPosture bound what the hook's answer may carry to
	// the user and into the audit log: longer messages are cut; more or
	// longer posture names make the answer invalid.
	MaxMessage      = 255
	MaxPostureNames = 10
	MaxPostureName  = 255
)

// Headers of a signed request: the Unix time in seconds, and
// "v1=" + hex(HMAC-SHA256(secret, timestamp + "." + body)).
const (
	HeaderTimestamp = "X-Keyway-Timestamp"
	HeaderSignature = "X-Keyway-Signature"
)

// GenericDenial is what the user sees whenever the hook did not approve a
// connection, except where the hook itself said no with a message.
const GenericDenial = "Error establishing connection. Please contact your administrator."

// Reason is why a connection was refused at the hook, as recorded on its
// audit event.
type Reason string

const (
	ReasonDenied       Reason = "client-connect-failed"
	ReasonTimedOut     Reason = "client-connect-handler-timed-out"
	ReasonOther        Reason = "client-connect-handler-other-execution-error"
	ReasonThrottled    Reason = "client-connect-handler-throttled"
	ReasonInvalid      Reason = "client-connect-handler-invalid-response"
	ReasonServiceError Reason = "client-connect-handler-service-error"
)

// Request is what the portal POSTs for each new connection.
type Request struct {
	ConnectionID    string   `json:"connection-id"`
	EndpointID      string   `json:"endpoint-id"`
	CommonName      string   `json:"common-name"`
	Username        string   `json:"username"`
	Groups          []string `json:"groups"`
	Platform        string   `json:"platform"`
	PlatformVersion string   `json:"platform-version"`
	PublicIP        string   `json:"public-ip"`
	ClientVersion   string   `json:"client-version"`
	Resource        string   `json:"resource"`
	ResourceTags    []string `json:"resource-tags"`
	Protocol        string   `json:"protocol"`
	Gateway         string   `json:"gateway"`
	Segment         string   `json:"segment"`
	SchemaVersion   string   `json:"schema-version"`
}

// Config is the hook as an admin set it.
type Config struct {
	Enabled bool
	URL     string
	// CABundle is PEM certificates the hook's certificate must chain to,
	// besides the system's; empty for the system's alone.
	CABundle string
	// Secret signs each request.
	Secret      string
	MaxInFlight int
}

// Result is the hook's decision on one connection.
type Result struct {
	Allowed bool
	// Reason is empty when Allowed.
	Reason Reason
	// Message is what the user is shown when not Allowed: the hook's own
	// message (cut to MaxMessage) when it said no, GenericDenial otherwise.
	Message string
	// Posture is the hook's posture-compliance-statuses.
	Posture []string
	// Called says the hook was called (it is not when disabled).
	Called  bool
	Elapsed time.Duration
	// Err says what went wrong, for the log; nil when the hook answered.
	Err error
}

// Exchange is a test request as it went: the raw request and response.
type Exchange struct {
	Request  string // method, URL, headers and body
	Response string // status, headers and body (bounded)
	Elapsed  time.Duration
	Result   Result
}

// Option changes how a Hook calls.
type Option func(*Hook)

// WithTimeout replaces Timeout; for tests only.
func WithTimeout(d time.Duration) Option { return func(h *Hook) { h.timeout = d } }

// WithNow sets the clock that stamps requests.
func WithNow(now func() time.Time) Option { return func(h *Hook) { h.now = now } }

// Hook calls the configured hook. It is safe for concurrent use;
// Configure affects only calls that start afterwards.
type Hook struct {
	timeout time.Duration
	now     func() time.Time
	cur     atomic.Pointer[client]
}

// client is one configuration's HTTP client and in-flight count.
type client struct {
	cfg      Config
	http     *http.Client
	inFlight atomic.Int64
}

// New returns a Hook with none configured (disabled).
func New(opts ...Option) *Hook {
	h := &Hook{timeout: Timeout, now: time.Now}
	for _, o := range opts {
		o(h)
	}
	h.cur.Store(&client{})
	return h
}

// Configure validates cfg and makes it the hook for new calls.
//
// Stand-in until the hook branch merges (its version wins): it checks
// little and keeps cfg, so that the Settings page can be built and
// tested against the documented behaviour.
func (h *Hook) Configure(cfg Config) error {
	if cfg.MaxInFlight == 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.MaxInFlight < 1 || cfg.MaxInFlight > 10000 {
		return errors.New("maximum calls in flight must be between 1 and 10000")
	}
	if cfg.URL != "" && !strings.HasPrefix(cfg.URL, "https://") {
		return errors.New("the hook URL must start with https://")
	}
	if cfg.Enabled && len(cfg.Secret) < 16 {
		return errors.New("set a shared secret of at least 16 bytes to enable the hook")
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if cfg.CABundle != "" && !pool.AppendCertsFromPEM([]byte(cfg.CABundle)) {
		return errors.New("the CA bundle holds no PEM certificate")
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	h.cur.Store(&client{cfg: cfg, http: &http.Client{Transport: tr, Timeout: h.timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}})
	return nil
}

// Config returns the current configuration.
func (h *Hook) Config() Config { return h.cur.Load().cfg }

// Enabled says whether connections are sent to the hook.
func (h *Hook) Enabled() bool { return h.cur.Load().cfg.Enabled }

// Authorize asks the hook about one connection; with the hook disabled it
// allows at once. It fails closed: every failure is a refusal with its
// Reason. Cancelling ctx (the user left) cancels the call.
func (h *Hook) Authorize(ctx context.Context, req Request) Result {
	if !h.Enabled() {
		return Result{Allowed: true}
	}
	panic("TODO(hook helper)")
}

// Test sends req to the hook as configured (even disabled) and returns
// the exchange, for the Settings page's "Send test request".
//
// Stand-in until the hook branch merges (its version wins).
func (h *Hook) Test(ctx context.Context, req Request) (x Exchange) {
	c := h.cur.Load()
	start := h.now()
	defer func() { x.Elapsed = h.now().Sub(start); x.Result.Elapsed = x.Elapsed }()
	fail := func(r Reason, err error) Exchange {
		x.Result = Result{Reason: r, Message: GenericDenial, Called: true, Err: err}
		return x
	}
	if c.http == nil || c.cfg.URL == "" {
		return fail(ReasonServiceError, errors.New("no hook URL is set"))
	}
	req.SchemaVersion = SchemaVersion
	body, err := json.Marshal(req)
	if err != nil {
		return fail(ReasonServiceError, err)
	}
	ts := strconv.FormatInt(h.now().Unix(), 10)
	mac := hmac.New(sha256.New, []byte(c.cfg.Secret))
	mac.Write([]byte(ts + "." + string(body)))
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return fail(ReasonServiceError, err)
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set(HeaderTimestamp, ts)
	hr.Header.Set(HeaderSignature, "v1="+hex.EncodeToString(mac.Sum(nil)))
	if dump, err := httputil.DumpRequestOut(hr, true); err == nil {
		x.Request = string(dump)
	}
	resp, err := c.http.Do(hr)
	if err != nil {
		return fail(ReasonOther, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponse+1))
	if err != nil {
		return fail(ReasonOther, err)
	}
	head, _ := httputil.DumpResponse(&http.Response{Status: resp.Status, StatusCode: resp.StatusCode, Proto: resp.Proto,
		ProtoMajor: resp.ProtoMajor, ProtoMinor: resp.ProtoMinor, Header: resp.Header, ContentLength: resp.ContentLength}, false)
	x.Response = string(head) + string(raw)
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		return fail(ReasonThrottled, errors.New(resp.Status))
	case resp.StatusCode/100 != 2:
		return fail(ReasonOther, errors.New(resp.Status))
	case len(raw) > MaxResponse:
		return fail(ReasonInvalid, errors.New("response too long"))
	}
	var out struct {
		Allow   *bool    `json:"allow"`
		Message *string  `json:"error-msg-on-denied-connection"`
		Posture []string `json:"posture-compliance-statuses"`
		Schema  string   `json:"schema-version"`
	}
	if err := json.Unmarshal(raw, &out); err != nil || out.Allow == nil || out.Message == nil || out.Schema != SchemaVersion {
		return fail(ReasonInvalid, fmt.Errorf("invalid response: %v", err))
	}
	x.Result = Result{Allowed: *out.Allow, Posture: out.Posture, Called: true}
	if !*out.Allow {
		x.Result.Reason, x.Result.Message = ReasonDenied, *out.Message
	}
	return x
}
