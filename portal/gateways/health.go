package gateways

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/keyway-dev/keyway/gateway/wire"
)

// HealthConfig tunes the health sync.
type HealthConfig struct {
	// Interval between checks of every gateway (15 s by design).
	Interval time.Duration
	// Attempts per check before a gateway is marked unavailable, with
	// Backoff doubling between them.
	Attempts int
	Backoff  time.Duration
	// Timeout bounds one attempt.
	Timeout time.Duration
	// Parallel bounds how many gateways are checked at once.
	Parallel int
}

// DefaultHealth is the design's health sync: every 15 s, 3 attempts with
// 1 s then 2 s between them.
var DefaultHealth = HealthConfig{Interval: 15 * time.Second, Attempts: 3, Backoff: time.Second, Timeout: 5 * time.Second, Parallel: 64}

// RunHealth checks every gateway with a key at each interval, and at once
// when the set of gateways changes, until ctx ends.
func (p *Pool) RunHealth(ctx context.Context, cfg HealthConfig) {
	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	for {
		p.CheckAll(ctx, cfg)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-p.checkNow:
		}
	}
}

// Check checks one gateway now, by id; unknown or pending ids are ignored.
func (p *Pool) Check(ctx context.Context, id string, cfg HealthConfig) {
	p.mu.Lock()
	e, ok := p.entries[id]
	var g Gateway
	if ok {
		g = e.gw
	}
	p.mu.Unlock()
	if ok && len(g.Key) > 0 {
		p.check(ctx, g, cfg)
	}
}

// CheckAll checks every gateway that has a key once, in parallel.
func (p *Pool) CheckAll(ctx context.Context, cfg HealthConfig) { p.CheckWhere(ctx, cfg, nil) }

// CheckWhere checks once, in parallel, every gateway with a key that
// keep accepts (nil accepts all): in a cluster the leader checks the
// remote gateways and each replica its own embedded one.
func (p *Pool) CheckWhere(ctx context.Context, cfg HealthConfig, keep func(Gateway) bool) {
	var gws []Gateway
	p.mu.Lock()
	for _, e := range p.entries {
		if len(e.gw.Key) > 0 && (keep == nil || keep(e.gw)) {
			gws = append(gws, e.gw)
		}
	}
	p.mu.Unlock()
	sem := make(chan struct{}, max(cfg.Parallel, 1))
	var wg sync.WaitGroup
	for _, g := range gws {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			p.check(ctx, g, cfg)
		}()
	}
	wg.Wait()
}

// check tries a gateway's status up to cfg.Attempts times and records the
// outcome; a change of state is logged.
func (p *Pool) check(ctx context.Context, g Gateway, cfg HealthConfig) {
	var st wire.Status
	var err error
	wait := cfg.Backoff
	for attempt := 1; attempt <= max(cfg.Attempts, 1); attempt++ {
		// A gateway that says it drains has answered: no retry.
		if st, err = p.status(ctx, g, cfg.Timeout); err == nil || ctx.Err() != nil || !st.DrainDeadline.IsZero() {
			break
		}
		if attempt < cfg.Attempts {
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
			wait *= 2
		}
	}
	if ctx.Err() != nil {
		return
	}
	if !st.DrainDeadline.IsZero() {
		p.notifyDrain(g.ID, st.DrainDeadline)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.entries[g.ID]
	if !ok || string(e.gw.Key) != string(g.Key) {
		return // changed while we checked; the next cycle checks the new one
	}
	prev := e.health.State
	h := Health{LastCheck: p.now()}
	if err != nil {
		h.State, h.LastError = StateUnavailable, err.Error()
		h.Version, h.Uptime = e.health.Version, e.health.Uptime
	} else {
		h.State, h.Version, h.Uptime, h.ActiveSessions = StateAvailable, st.Version, time.Duration(st.UptimeSeconds)*time.Second, st.ActiveSessions
	}
	e.health = h
	switch {
	case h.State == StateUnavailable && prev != StateUnavailable:
		p.logger.Error("gateway unavailable", "gateway", g.Name, "segment", g.Segment, "attempts", cfg.Attempts, "err", err)
	case h.State == StateAvailable && prev != StateAvailable:
		p.logger.Info("gateway available", "gateway", g.Name, "segment", g.Segment, "version", st.Version)
	}
}

// SetHealth sets the health of gateway id as another replica checked it
// (portal/cluster); an unknown or pending gateway is left alone. A change
// of state is logged as a check's would be.
func (p *Pool) SetHealth(id string, h Health) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.entries[id]
	if !ok || len(e.gw.Key) == 0 || e.health == h {
		return
	}
	prev := e.health.State
	e.health = h
	if h.State != prev {
		p.logger.Info("gateway health from the cluster's leader", "gateway", e.gw.Name, "state", h.State, "err", h.LastError)
	}
}

// status asks a gateway's management listener for its status. Each
// gateway keeps one idle connection between checks, so a cycle costs a
// request, not a TLS handshake; a dead gateway still fails at once.
func (p *Pool) status(ctx context.Context, g Gateway, timeout time.Duration) (wire.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+g.ManagementAddr+"/status", nil)
	resp, err := (&http.Client{Transport: p.transport(g)}).Do(req)
	if err != nil {
		return wire.Status{}, fmt.Errorf("status check of %s: %w", g.ManagementAddr, err)
	}
	defer resp.Body.Close()
	defer io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	var st wire.Status
	if resp.StatusCode != http.StatusOK {
		// A gateway that cannot take sessions says why (503).
		json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&st)
		// A draining gateway's deadline is kept, to tell its users.
		drain := wire.Status{DrainDeadline: st.DrainDeadline}
		if st.Error != "" {
			return drain, fmt.Errorf("status check of %s: HTTP %d: %.200s", g.ManagementAddr, resp.StatusCode, st.Error)
		}
		return drain, fmt.Errorf("status check of %s: HTTP %d", g.ManagementAddr, resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&st); err != nil {
		return wire.Status{}, fmt.Errorf("status check of %s: %w", g.ManagementAddr, err)
	}
	return st, nil
}

// transport returns the HTTP transport for g's management listener, made
// once per gateway and key.
func (p *Pool) transport(g Gateway) *http.Transport {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.entries[g.ID]
	if !ok {
		return &http.Transport{TLSClientConfig: wire.ClientTLSConfig(p.identity, g.Key), DisableKeepAlives: true}
	}
	if e.transport == nil {
		e.transport = &http.Transport{TLSClientConfig: wire.ClientTLSConfig(p.identity, g.Key),
			MaxIdleConnsPerHost: 1, IdleConnTimeout: time.Minute}
	}
	return e.transport
}
