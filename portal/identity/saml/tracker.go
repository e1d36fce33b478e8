package saml

import (
	"crypto/sha256"
	"errors"
	"sync"
	"time"

	gosaml "github.com/crewjam/saml"
)

// Limits on the state kept between a sign-in's start and its end.
const (
	// maxPending bounds the sign-ins in progress (started, not finished):
	// anyone can start one, so the store must not grow without end.
	maxPending = 10000
	// maxPendingPerClient bounds those of one client address: past it,
	// its oldest is dropped, so one address flooding the sign-in button
	// displaces only its own requests, never everyone's.
	maxPendingPerClient = 32
	// pendingTTL is how long a user has at the IdP to sign in.
	pendingTTL = 10 * time.Minute
	// maxConsumed bounds the assertion ids remembered against replay;
	// only validly signed assertions reach it.
	maxConsumed = 100000
)

// ErrBusy: too many sign-ins in progress to start another.
var ErrBusy = errors.New("too many sign-ins are in progress; try again in a few minutes")

// pending is a sign-in request this portal sent to an IdP.
type pending struct {
	provider string
	next     string
	client   string
	expires  time.Time
}

// requests are the outstanding AuthnRequest ids. They are kept here, not
// in the browser's session: the IdP's cross-site POST to the ACS carries
// no SameSite=Lax cookie. Each is used once.
type requests struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]pending
	// byClient are each client address's request ids, oldest first.
	byClient map[string][]string
}

func newRequests(now func() time.Time) *requests {
	return &requests{now: now, m: make(map[string]pending), byClient: make(map[string][]string)}
}

// add records request id for provider, made by client (its address), to
// continue at next.
func (r *requests) add(id, provider, next, client string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if ids := r.byClient[client]; len(ids) >= maxPendingPerClient {
		r.remove(ids[0])
	}
	if len(r.m) >= maxPending {
		for k, p := range r.m {
			if !now.Before(p.expires) {
				r.remove(k)
			}
		}
		if len(r.m) >= maxPending {
			return ErrBusy
		}
	}
	r.m[id] = pending{provider: provider, next: next, client: client, expires: now.Add(pendingTTL)}
	r.byClient[client] = append(r.byClient[client], id)
	return nil
}

// remove forgets request id; r.mu is held.
func (r *requests) remove(id string) {
	p, ok := r.m[id]
	if !ok {
		return
	}
	delete(r.m, id)
	ids := r.byClient[p.client]
	for i, v := range ids {
		if v == id {
			ids = append(ids[:i:i], ids[i+1:]...)
			break
		}
	}
	if len(ids) == 0 {
		delete(r.byClient, p.client)
	} else {
		r.byClient[p.client] = ids
	}
}

// outstanding reports whether id is an unexpired request for provider.
func (r *requests) outstanding(id, provider string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.m[id]
	return ok && p.provider == provider && r.now().Before(p.expires)
}

// take removes request id of provider and returns where its sign-in
// continues; false if it is unknown, expired or already used.
func (r *requests) take(id, provider string) (next string, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.m[id]
	if !ok || p.provider != provider {
		return "", false
	}
	r.remove(id)
	if !r.now().Before(p.expires) {
		return "", false
	}
	return p.next, true
}

// replayCache remembers accepted assertion ids until they expire, so
// that each is accepted once. It implements gosaml.AssertionReplayCache.
type replayCache struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[[sha256.Size]byte]time.Time
}

func newReplayCache(now func() time.Time) *replayCache {
	return &replayCache{now: now, m: make(map[[sha256.Size]byte]time.Time)}
}

var errReplayFull = errors.New("too many recent sign-ins to check this one for replay")

// Consume records id until expiresAt; gosaml.ErrAssertionReplayed if it
// is already recorded.
func (c *replayCache) Consume(id string, expiresAt time.Time) error {
	k := sha256.Sum256([]byte(id)) // bounded keys, whatever the IdP sends
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if exp, ok := c.m[k]; ok && now.Before(exp) {
		return gosaml.ErrAssertionReplayed
	}
	if len(c.m) >= maxConsumed {
		for k, exp := range c.m {
			if !now.Before(exp) {
				delete(c.m, k)
			}
		}
		if len(c.m) >= maxConsumed {
			return errReplayFull
		}
	}
	c.m[k] = expiresAt
	return nil
}
