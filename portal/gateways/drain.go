package gateways

import "time"

// SetDrainNotify sets what the health checks call when a gateway says it
// drains (it restarts, lets its sessions run until deadline and takes no
// new ones), so that the users of its sessions can be told.
func (p *Pool) SetDrainNotify(f func(gatewayID string, deadline time.Time)) {
	p.mu.Lock()
	p.drainNotify = f
	p.mu.Unlock()
}

// MarkDraining takes the gateway with id out of selection until its next
// health check passes: it refused a session because it drains.
func (p *Pool) MarkDraining(id, reason string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.entries[id]
	if !ok || e.health.State != StateAvailable {
		return
	}
	e.health.State, e.health.LastError = StateUnavailable, reason
	p.logger.Info("gateway drains; no new sessions go to it", "gateway", e.gw.Name, "segment", e.gw.Segment)
}

// notifyDrain tells SetDrainNotify's function, outside the lock: it
// writes to the users' pages.
func (p *Pool) notifyDrain(id string, deadline time.Time) {
	p.mu.Lock()
	notify := p.drainNotify
	p.mu.Unlock()
	if notify != nil {
		notify(id, deadline)
	}
}
