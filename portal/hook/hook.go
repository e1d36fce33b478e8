// Package hook calls the connection authorization hook: an HTTPS endpoint
// of the organisation's that approves or denies every new connection,
// synchronously, failing closed.
package hook

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/keyway-dev/keyway/gateway/tlsconf"
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

// String describes cfg without its secret, so a Config printed by
// mistake does not leak it.
func (c Config) String() string {
	secret := "not set"
	if c.Secret != "" {
		secret = "set"
	}
	return fmt.Sprintf("hook{enabled=%t url=%q ca-bundle=%d bytes secret=%s max-in-flight=%d}",
		c.Enabled, c.URL, len(c.CABundle), secret, c.MaxInFlight)
}

// LogValue redacts the secret in logs.
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }

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
	// Called says the hook was called: it is not when disabled, when
	// throttled because MaxInFlight calls were waiting, or on a service
	// error before the request was sent.
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

// WithTLS sets the lowest TLS version and the cipher suites of calls
// (default: TLS 1.2 with Go's suites).
func WithTLS(s tlsconf.Settings) Option { return func(h *Hook) { h.tls = s } }

// WithNow sets the clock that stamps requests.
func WithNow(now func() time.Time) Option { return func(h *Hook) { h.now = now } }

// Hook calls the configured hook. It is safe for concurrent use;
// Configure affects only calls that start afterwards.
type Hook struct {
	timeout time.Duration
	now     func() time.Time
	tls     tlsconf.Settings
	cur     atomic.Pointer[client]
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

// Configure validates cfg and makes it the hook for new calls. Calls
// already running finish under the configuration they started with. A
// MaxInFlight of 0 means DefaultMaxInFlight, and Config reports it so.
func (h *Hook) Configure(cfg Config) error {
	cfg, err := validate(cfg)
	if err != nil {
		return err
	}
	c, err := newClient(cfg, h.tls)
	if err != nil {
		return err
	}
	h.cur.Swap(c).retire()
	return nil
}

// Close drops the idle connections to the hook. Calls may still be made
// afterwards; Close is for shutdown and tests.
func (h *Hook) Close() { h.cur.Load().closeIdle() }

// Config returns the current configuration.
func (h *Hook) Config() Config { return h.cur.Load().cfg }

// Enabled says whether connections are sent to the hook.
func (h *Hook) Enabled() bool { return h.cur.Load().cfg.Enabled }

// Authorize asks the hook about one connection; with the hook disabled it
// allows at once. It fails closed: every failure is a refusal with its
// Reason. Cancelling ctx (the user left) cancels the call: Authorize
// returns at once with Reason ReasonOther and an Err that matches
// ErrAbandoned and ctx's error (errors.Is), so the caller can tell an
// abandoned connection from a failing hook.
//
// The call is refused as ReasonThrottled without reaching the hook when
// MaxInFlight calls are already waiting on it; Called is then false.
func (h *Hook) Authorize(ctx context.Context, req Request) Result {
	c := h.cur.Load()
	if !c.cfg.Enabled {
		return Result{Allowed: true}
	}
	return h.call(ctx, c, req, nil)
}

// Test sends req to the hook as configured (even disabled) and returns
// the exchange, for the Settings page's "Send test request". It is
// throttled and times out like Authorize.
func (h *Hook) Test(ctx context.Context, req Request) Exchange {
	var x Exchange
	x.Result = h.call(ctx, h.cur.Load(), req, &x)
	x.Elapsed = x.Result.Elapsed
	return x
}
