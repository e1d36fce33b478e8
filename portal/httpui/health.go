package httpui

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/keyway-dev/keyway/portal/gateways"
)

// readyTimeout bounds each readiness check, so that a stuck database or
// disk answers the probe with 503 instead of hanging it.
const readyTimeout = 2 * time.Second

// readyCacheTTL is how long a readiness answer is reused: /readyz is
// public, and each check queries the database and writes a file, which a
// flood of probes must not turn into a flood of fsyncs.
const readyCacheTTL = time.Second

// readyCache holds the last readiness answer; its mutex also makes
// concurrent probes wait for one run of the checks.
type readyCache struct {
	mu  sync.Mutex
	at  time.Time
	res Readiness
}

// Readiness is the body of /readyz: each check with "ok" or why it failed.
type Readiness struct {
	Ready  bool              `json:"ready"`
	Checks map[string]string `json:"checks"`
}

// livez says the process is alive and serving HTTP; nothing else, so a
// database outage does not get the portal restarted.
func (s *Server) livez(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Write([]byte("ok\n"))
}

// readyz answers 200 when the portal can serve sessions — the database
// answers a query, the recording store takes a write, and a gateway is
// available — and 503 saying which check failed otherwise.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	s.ready.mu.Lock()
	// A drain fails the probe at once, not at the cache's next refresh.
	_, draining := s.live.Draining()
	if time.Since(s.ready.at) >= readyCacheTTL || (draining && s.ready.res.Ready) {
		s.ready.res, s.ready.at = s.Ready(r.Context()), time.Now()
	}
	res := s.ready.res
	s.ready.mu.Unlock()
	status := http.StatusOK
	if !res.Ready {
		status = http.StatusServiceUnavailable
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, res)
}

// Ready runs the readiness checks.
func (s *Server) Ready(ctx context.Context) Readiness {
	res := Readiness{Ready: true, Checks: map[string]string{"drain": "ok"}}
	if _, draining := s.live.Draining(); draining {
		res.Ready, res.Checks["drain"] = false, errDraining.Error()
	}
	check := func(name string, f func(context.Context) error) {
		ctx, cancel := context.WithTimeout(ctx, readyTimeout)
		defer cancel()
		if err := f(ctx); err != nil {
			res.Ready = false
			res.Checks[name] = err.Error()
			return
		}
		res.Checks[name] = "ok"
	}
	check("database", func(ctx context.Context) error {
		var one int
		return s.Store.DB().QueryRowContext(ctx, "SELECT 1").Scan(&one)
	})
	check("recordings", func(ctx context.Context) error {
		if s.Recordings == nil {
			return errNoRecordingStore
		}
		return s.Recordings.Writable(ctx)
	})
	check("gateways", func(context.Context) error {
		if s.Gateways == nil {
			return errNoGateway
		}
		for _, g := range s.Gateways.Statuses() {
			if g.State == gateways.StateAvailable {
				return nil
			}
		}
		return errNoGateway
	})
	return res
}

type healthError string

func (e healthError) Error() string { return string(e) }

const (
	errNoGateway        = healthError("no gateway is available")
	errNoRecordingStore = healthError("no recording store is configured")
)
