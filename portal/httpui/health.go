package httpui

import (
	"context"
	"net/http"
	"time"

	"github.com/keyway-dev/keyway/portal/gateways"
)

// readyTimeout bounds each Readiness check, so that a stuck database or
// disk answers the probe with 503 instead of hanging it.
const readyTimeout = 2 * time.Second

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
	res := s.Ready(r.Context())
	status := http.StatusOK
	if !res.Ready {
		status = http.StatusServiceUnavailable
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, res)
}

// Ready runs the Readiness checks.
func (s *Server) Ready(ctx context.Context) Readiness {
	res := Readiness{Ready: true, Checks: map[string]string{}}
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
	check("recordings", func(context.Context) error {
		if s.Recordings == nil {
			return errNoRecordingStore
		}
		return s.Recordings.Writable()
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
