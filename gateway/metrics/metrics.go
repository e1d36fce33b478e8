// Package metrics defines the Prometheus metrics of the portal and the
// gateway, registered on a registry the caller owns (never the global
// default one), and the HTTP handler that serves them.
//
// Every method is safe on a nil receiver, so parts built without metrics
// (tests, tools) need no checks. It lives under gateway/, as wire and
// tlsconf do, because the portal embeds a gateway and both use it.
package metrics

import (
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Outcome labels shared by several metrics.
const (
	OutcomeOK     = "ok"
	OutcomeFailed = "failed"
)

// connectBuckets span a loopback handshake (a few ms) to a slow RDP
// target's sign-in (tens of seconds).
var connectBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// hookBuckets span a hook on this machine to one at its timeout.
var hookBuckets = []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}

// Handler serves reg's metrics in the Prometheus text format.
func Handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, ErrorHandling: promhttp.ContinueOnError})
}

// NewRegistry returns a registry with the Go runtime and process
// collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Portal holds the portal's metrics.
type Portal struct {
	sessionsLive    *prometheus.GaugeVec
	sessionsStarted *prometheus.CounterVec
	connectSeconds  *prometheus.HistogramVec
	bytesRelayed    *prometheus.CounterVec
	recordings      *prometheus.CounterVec
	recordingBytes  prometheus.Counter
	hookSeconds     prometheus.Histogram
	hookOutcomes    *prometheus.CounterVec
	signIns         *prometheus.CounterVec
	gatewayTokens   *prometheus.CounterVec
}

// NewPortal registers the portal's metrics on reg.
func NewPortal(reg prometheus.Registerer) *Portal {
	m := &Portal{
		sessionsLive: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "keyway_portal_sessions_live",
			Help: "Sessions running now, by protocol."}, []string{"protocol"}),
		sessionsStarted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keyway_portal_sessions_started_total",
			Help: "Sessions asked for, by protocol and outcome: ok, or the refusal code (no_grant, hook, policy, gateway_unavailable, ...)."},
			[]string{"protocol", "outcome"}),
		connectSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "keyway_portal_connect_seconds",
			Help: "Time from a session's admission to the gateway's answer that it is open, by protocol.", Buckets: connectBuckets},
			[]string{"protocol"}),
		bytesRelayed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keyway_portal_bytes_relayed_total",
			Help: "Bytes relayed between users and gateways by ended sessions, by direction: in is client to target, out target to client."},
			[]string{"direction"}),
		recordings: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keyway_portal_recordings_uploaded_total",
			Help: "Recording uploads from gateways, by outcome (ok, failed)."}, []string{"outcome"}),
		recordingBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "keyway_portal_recording_bytes_uploaded_total",
			Help: "Bytes of recordings received from gateways."}),
		hookSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "keyway_portal_hook_seconds",
			Help: "Time the connection authorization hook took to answer.", Buckets: hookBuckets}),
		hookOutcomes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keyway_portal_hook_calls_total",
			Help: "Calls of the connection authorization hook, by outcome: allow, deny, error."}, []string{"outcome"}),
		signIns: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keyway_portal_sign_ins_total",
			Help: "Sign-in attempts, by method (password, ldap, oidc, saml; a second factor counts under the first) and outcome (ok, failed)."},
			[]string{"method", "outcome"}),
		gatewayTokens: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keyway_portal_gateway_token_events_total",
			Help: "Gateway access token events, by kind: issued, refused, expiring (a gateway called with under 7 days left), renew_failed (a gateway reported a failed renewal)."},
			[]string{"gateway", "event"}),
	}
	reg.MustRegister(m.sessionsLive, m.sessionsStarted, m.connectSeconds, m.bytesRelayed, m.recordings, m.recordingBytes,
		m.hookSeconds, m.hookOutcomes, m.signIns, m.gatewayTokens)
	return m
}

// SessionOpened counts a session that opened after connect of waiting
// for its gateway.
func (m *Portal) SessionOpened(protocol string, connect time.Duration) {
	if m == nil {
		return
	}
	m.sessionsStarted.WithLabelValues(protocol, OutcomeOK).Inc()
	m.sessionsLive.WithLabelValues(protocol).Inc()
	m.connectSeconds.WithLabelValues(protocol).Observe(connect.Seconds())
}

// SessionRefused counts a session refused with code.
func (m *Portal) SessionRefused(protocol, code string) {
	if m == nil {
		return
	}
	m.sessionsStarted.WithLabelValues(protocol, code).Inc()
}

// SessionEnded counts the end of an opened session and its bytes.
func (m *Portal) SessionEnded(protocol string, in, out int64) {
	if m == nil {
		return
	}
	m.sessionsLive.WithLabelValues(protocol).Dec()
	m.bytesRelayed.WithLabelValues("in").Add(float64(in))
	m.bytesRelayed.WithLabelValues("out").Add(float64(out))
}

// RecordingUploaded counts a recording upload's end and its bytes.
func (m *Portal) RecordingUploaded(ok bool, bytes int64) {
	if m == nil {
		return
	}
	m.recordings.WithLabelValues(outcome(ok)).Inc()
	if bytes > 0 {
		m.recordingBytes.Add(float64(bytes))
	}
}

// Hook counts a call of the authorization hook that took d.
func (m *Portal) Hook(outcome string, d time.Duration) {
	if m == nil {
		return
	}
	m.hookOutcomes.WithLabelValues(outcome).Inc()
	m.hookSeconds.Observe(d.Seconds())
}

// SignIn counts a sign-in attempt.
func (m *Portal) SignIn(method string, ok bool) {
	if m == nil {
		return
	}
	m.signIns.WithLabelValues(method, outcome(ok)).Inc()
}

// Gateway token event kinds.
const (
	TokenIssued      = "issued"
	TokenRefused     = "refused"
	TokenExpiring    = "expiring"
	TokenRenewFailed = "renew_failed"
)

// GatewayToken counts an access token event of gateway.
func (m *Portal) GatewayToken(gateway, event string) {
	if m == nil {
		return
	}
	m.gatewayTokens.WithLabelValues(gateway, event).Inc()
}

// GatewayTokenExpiry is when a gateway's last issued token expires.
type GatewayTokenExpiry struct {
	Gateway string
	Expires time.Time
}

// GatewayTokenExpiries registers
// keyway_portal_gateway_token_expiry_timestamp_seconds, read from expiries
// at every scrape; a gateway never issued a token has no series.
func GatewayTokenExpiries(reg prometheus.Registerer, expiries func() []GatewayTokenExpiry) {
	reg.MustRegister(&expiryCollector{expiries: expiries, desc: prometheus.NewDesc("keyway_portal_gateway_token_expiry_timestamp_seconds",
		"When each gateway's last issued access token expires, in Unix seconds; alert on time() above it minus 7 days.",
		[]string{"gateway"}, nil)})
}

type expiryCollector struct {
	expiries func() []GatewayTokenExpiry
	desc     *prometheus.Desc
}

func (c *expiryCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *expiryCollector) Collect(ch chan<- prometheus.Metric) {
	for _, e := range c.expiries() {
		if e.Expires.IsZero() {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(e.Expires.Unix()), e.Gateway)
	}
}

func outcome(ok bool) string {
	if ok {
		return OutcomeOK
	}
	return OutcomeFailed
}

// GatewayState is one gateway's health as the portal sees it.
type GatewayState struct {
	Gateway, State string
}

// States are the health states a gateway can be in, each exported (0 or
// 1) so that a gateway leaving a state shows as 0, not as a missing
// series.
var States = []string{"pending", "checking", "available", "unavailable"}

// GatewayStates registers keyway_portal_gateway_state, read from states at
// every scrape.
func GatewayStates(reg prometheus.Registerer, states func() []GatewayState) {
	reg.MustRegister(&stateCollector{states: states, desc: prometheus.NewDesc("keyway_portal_gateway_state",
		"1 for the health state each gateway is in (pending, checking, available, unavailable), 0 for the others.",
		[]string{"gateway", "state"}, nil)})
}

type stateCollector struct {
	states func() []GatewayState
	desc   *prometheus.Desc
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	for _, g := range c.states() {
		for _, s := range States {
			v := 0.0
			if s == g.State {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, v, g.Gateway, s)
		}
	}
}

// Gateway holds a gateway's metrics.
type Gateway struct {
	sessionsLive    *prometheus.GaugeVec
	sessionsStarted *prometheus.CounterVec
	bytesRelayed    *prometheus.CounterVec
	spooled         prometheus.Counter
	uploaded        prometheus.Counter
	uploadFailures  prometheus.Counter
	tokenRenewals   *prometheus.CounterVec
}

// Spool is what a gateway's spool reports at every scrape.
type Spool interface {
	// Pending returns the number of recordings waiting for upload and
	// their bytes.
	Pending() (n int, bytes int64, err error)
	// FreeBytes is the free space of the spool's file system.
	FreeBytes() (uint64, error)
}

// NewGateway registers a gateway's metrics on reg.
func NewGateway(reg prometheus.Registerer) *Gateway {
	m := &Gateway{
		sessionsLive: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "keyway_gateway_sessions_live",
			Help: "Sessions running through this gateway now, by protocol."}, []string{"protocol"}),
		sessionsStarted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keyway_gateway_sessions_started_total",
			Help: "Sessions the portal asked this gateway for, by protocol and outcome: ok, or the refusal code."},
			[]string{"protocol", "outcome"}),
		bytesRelayed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keyway_gateway_bytes_relayed_total",
			Help: "Bytes on the portal side of session connections, TLS included, by direction: in from the portal, out to it."},
			[]string{"direction"}),
		spooled: prometheus.NewCounter(prometheus.CounterOpts{Name: "keyway_gateway_recordings_spooled_total",
			Help: "Recordings started in the spool."}),
		uploaded: prometheus.NewCounter(prometheus.CounterOpts{Name: "keyway_gateway_recordings_uploaded_total",
			Help: "Recordings the portal confirmed and the spool removed."}),
		uploadFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "keyway_gateway_upload_failures_total",
			Help: "Failed recording upload attempts (each is retried)."}),
		tokenRenewals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keyway_gateway_token_renewals_total",
			Help: "Attempts to get or renew the gateway's access token, by outcome (ok, failed; failures are retried)."},
			[]string{"outcome"}),
	}
	reg.MustRegister(m.sessionsLive, m.sessionsStarted, m.bytesRelayed, m.spooled, m.uploaded, m.uploadFailures, m.tokenRenewals)
	return m
}

// WatchToken registers keyway_gateway_token_expiry_timestamp_seconds,
// read from expires at every scrape (0 while the gateway has no token).
func WatchToken(reg prometheus.Registerer, expires func() time.Time) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "keyway_gateway_token_expiry_timestamp_seconds",
		Help: "When the gateway's access token expires, in Unix seconds; 0 while it has none."}, func() float64 {
		t := expires()
		if t.IsZero() {
			return 0
		}
		return float64(t.Unix())
	}))
}

// TokenRenewal counts an attempt to get or renew the access token.
func (m *Gateway) TokenRenewal(ok bool) {
	if m != nil {
		m.tokenRenewals.WithLabelValues(outcome(ok)).Inc()
	}
}

// WatchSpool registers the spool gauges, read from sp at every scrape.
func WatchSpool(reg prometheus.Registerer, sp Spool) {
	reg.MustRegister(&pendingCollector{sp: sp,
		count: prometheus.NewDesc("keyway_gateway_recordings_pending",
			"Recordings in the spool not yet uploaded, open ones included (-1: the spool is unreadable).", nil, nil),
		bytes: prometheus.NewDesc("keyway_gateway_recordings_pending_bytes",
			"Bytes of the recordings in the spool not yet uploaded (-1: the spool is unreadable).", nil, nil)})
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "keyway_gateway_spool_free_bytes",
		Help: "Free space of the spool's file system (-1: unknown)."}, func() float64 {
		n, err := sp.FreeBytes()
		if err != nil {
			return -1
		}
		return float64(n)
	}))
}

// pendingCollector reads the spool once per scrape for both gauges.
type pendingCollector struct {
	sp           Spool
	count, bytes *prometheus.Desc
}

func (c *pendingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.count; ch <- c.bytes }

func (c *pendingCollector) Collect(ch chan<- prometheus.Metric) {
	n, b, err := c.sp.Pending()
	if err != nil {
		n, b = -1, -1
	}
	ch <- prometheus.MustNewConstMetric(c.count, prometheus.GaugeValue, float64(n))
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(b))
}

// CountConn counts the bytes read from and written to c; nil m returns c.
func (m *Gateway) CountConn(c net.Conn) net.Conn {
	if m == nil {
		return c
	}
	return &countingConn{Conn: c, in: m.bytesRelayed.WithLabelValues("in"), out: m.bytesRelayed.WithLabelValues("out")}
}

// countingConn adds what passes to its counters as it passes, so that
// long sessions show in rates before they end.
type countingConn struct {
	net.Conn
	in, out prometheus.Counter
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.in.Add(float64(n))
	}
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.out.Add(float64(n))
	}
	return n, err
}

// CloseWrite keeps the half-close of a TCP connection, which TLS's
// CloseWrite passes on.
func (c *countingConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// SessionOpened counts a session that opened.
func (m *Gateway) SessionOpened(protocol string) {
	if m == nil {
		return
	}
	m.sessionsStarted.WithLabelValues(protocol, OutcomeOK).Inc()
	m.sessionsLive.WithLabelValues(protocol).Inc()
}

// SessionRefused counts a session that failed to open with code.
func (m *Gateway) SessionRefused(protocol, code string) {
	if m == nil {
		return
	}
	m.sessionsStarted.WithLabelValues(protocol, code).Inc()
}

// SessionEnded counts the end of an opened session.
func (m *Gateway) SessionEnded(protocol string) {
	if m == nil {
		return
	}
	m.sessionsLive.WithLabelValues(protocol).Dec()
}

// RecordingSpooled counts a recording started in the spool.
func (m *Gateway) RecordingSpooled() {
	if m != nil {
		m.spooled.Inc()
	}
}

// Upload counts an upload attempt's result.
func (m *Gateway) Upload(ok bool) {
	if m == nil {
		return
	}
	if ok {
		m.uploaded.Inc()
	} else {
		m.uploadFailures.Inc()
	}
}
