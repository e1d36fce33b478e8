// Package examplehook is a small connection authorization hook for
// Keyway: it allows listed users connecting from listed networks and
// reports one posture status. It checks each request's signature and
// refuses replays. It stands alone (it does not import the portal), so it
// can be copied as the start of an organisation's own hook; see
// docs/hooks.md.
package examplehook

import (
	"container/heap"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Limits of what the hook accepts.
const (
	// MaxSkew is how far a request's timestamp may be from the hook's
	// clock; a signature is remembered this long after its timestamp.
	MaxSkew = 5 * time.Minute
	// maxBody bounds a request; the portal's are a few hundred bytes.
	maxBody = 64 << 10
	// DefaultMaxRemembered bounds the signatures remembered against
	// replay. When full, requests are answered 429 until old ones expire:
	// forgetting a signature still inside the window would let it replay.
	DefaultMaxRemembered = 100_000
)

// Request headers, as the portal sends them.
const (
	headerTimestamp = "X-Keyway-Timestamp"
	headerSignature = "X-Keyway-Signature"
)

// Config says whom the hook allows.
type Config struct {
	// Secret is the shared secret set on the portal's Settings page.
	Secret string
	// Users allowed; empty allows every user.
	Users []string
	// Networks the client's public-ip must be in; empty allows any.
	Networks []netip.Prefix
	// Posture, when set, is reported as the one posture status of every
	// connection.
	Posture string
	// Now is the clock; nil for time.Now.
	Now func() time.Time
	// MaxRemembered bounds the replay memory; 0 for DefaultMaxRemembered.
	MaxRemembered int
	// Log receives one line per request; nil for slog.Default().
	Log *slog.Logger
}

// Request is what the portal POSTs (schema v1).
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

// Response is the hook's answer (schema v1); every field is required.
type Response struct {
	Allow         bool     `json:"allow"`
	Message       string   `json:"error-msg-on-denied-connection"`
	Posture       []string `json:"posture-compliance-statuses"`
	SchemaVersion string   `json:"schema-version"`
}

// Errors of Verify.
var (
	ErrSignature = errors.New("signature does not match")
	ErrStale     = errors.New("timestamp is outside the allowed clock skew")
	ErrReplay    = errors.New("request was already seen")
	ErrFull      = errors.New("too many recent requests remembered")
)

// Handler answers the portal's requests.
type Handler struct {
	cfg  Config
	mu   sync.Mutex
	seen map[string]time.Time // signature → when it may be forgotten
	exp  expiries
}

// New returns a Handler for cfg.
func New(cfg Config) *Handler {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxRemembered <= 0 {
		cfg.MaxRemembered = DefaultMaxRemembered
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Handler{cfg: cfg, seen: make(map[string]time.Time)}
}

// ServeHTTP checks the request and answers allow or deny.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	// Read one byte past the limit to tell a long body from one that fits.
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		http.Error(w, "cannot read request", http.StatusBadRequest)
		return
	}
	if len(body) > maxBody {
		http.Error(w, "request too large", http.StatusRequestEntityTooLarge)
		return
	}
	switch err := h.Verify(r.Header.Get(headerTimestamp), r.Header.Get(headerSignature), body); {
	case errors.Is(err, ErrFull):
		http.Error(w, err.Error(), http.StatusTooManyRequests)
		return
	case err != nil:
		h.cfg.Log.Warn("hook request refused", "err", err, "remote", r.RemoteAddr)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	var req Request
	if err := json.Unmarshal(body, &req); err != nil || req.SchemaVersion != "v1" {
		http.Error(w, "not a v1 request", http.StatusBadRequest)
		return
	}
	resp := h.Decide(req)
	h.cfg.Log.Info("hook decision", "connection", req.ConnectionID, "user", req.Username,
		"public_ip", req.PublicIP, "resource", req.Resource, "allow", resp.Allow)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

// Verify checks a request's signature and timestamp, and remembers the
// signature so the same request is refused if sent again.
func (h *Handler) Verify(timestamp, signature string, body []byte) error {
	sig, ok := strings.CutPrefix(signature, "v1=")
	if !ok || len(sig) != 2*sha256.Size {
		return fmt.Errorf("%w: want v1=<64 hex digits>", ErrSignature)
	}
	got, err := hex.DecodeString(sig)
	if err != nil {
		return fmt.Errorf("%w: not hex", ErrSignature)
	}
	// Sign first, then compare: the timestamp is only believed once the
	// signature covering it matches.
	m := hmac.New(sha256.New, []byte(h.cfg.Secret))
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	if !hmac.Equal(got, m.Sum(nil)) {
		return ErrSignature
	}
	sec, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: timestamp %q is not Unix seconds", ErrStale, timestamp)
	}
	now := h.cfg.Now()
	ts := time.Unix(sec, 0)
	if ts.Before(now.Add(-MaxSkew)) || ts.After(now.Add(MaxSkew)) {
		return fmt.Errorf("%w: %s, hook's clock %s", ErrStale, ts.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return h.remember(sig, ts.Add(MaxSkew), now)
}

// remember records sig until forget; a signature already remembered is a
// replay.
func (h *Handler) remember(sig string, forget, now time.Time) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for len(h.exp) > 0 && h.exp[0].at.Before(now) {
		delete(h.seen, heap.Pop(&h.exp).(expiry).sig)
	}
	if _, ok := h.seen[sig]; ok {
		return ErrReplay
	}
	if len(h.seen) >= h.cfg.MaxRemembered {
		return ErrFull
	}
	h.seen[sig] = forget
	heap.Push(&h.exp, expiry{sig: sig, at: forget})
	return nil
}

// Decide answers a verified request.
func (h *Handler) Decide(req Request) Response {
	resp := Response{Posture: []string{}, SchemaVersion: "v1"}
	if h.cfg.Posture != "" {
		resp.Posture = []string{h.cfg.Posture}
	}
	if len(h.cfg.Users) > 0 && !slices.Contains(h.cfg.Users, req.Username) {
		resp.Message = fmt.Sprintf("User %s may not connect through Keyway.", req.Username)
		return resp
	}
	if len(h.cfg.Networks) > 0 {
		addr, err := netip.ParseAddr(req.PublicIP)
		if err != nil {
			resp.Message = "Your address is unknown, so the connection was refused."
			return resp
		}
		addr = addr.Unmap()
		if !slices.ContainsFunc(h.cfg.Networks, func(p netip.Prefix) bool { return p.Contains(addr) }) {
			resp.Message = fmt.Sprintf("Connections from %s are not allowed.", addr)
			return resp
		}
	}
	resp.Allow = true
	return resp
}

// ParseNetworks reads a comma-separated CIDR list ("" for none).
func ParseNetworks(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range splitList(list) {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("network %q: %w", s, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// ParseUsers reads a comma-separated user list ("" for none).
func ParseUsers(list string) []string { return splitList(list) }

func splitList(list string) []string {
	var out []string
	for s := range strings.SplitSeq(list, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// expiries is a min-heap of when remembered signatures may be forgotten.
type expiry struct {
	sig string
	at  time.Time
}

type expiries []expiry

func (e expiries) Len() int           { return len(e) }
func (e expiries) Less(i, j int) bool { return e[i].at.Before(e[j].at) }
func (e expiries) Swap(i, j int)      { e[i], e[j] = e[j], e[i] }
func (e *expiries) Push(x any)        { *e = append(*e, x.(expiry)) }
func (e *expiries) Pop() any {
	old := *e
	x := old[len(old)-1]
	*e = old[:len(old)-1]
	return x
}
