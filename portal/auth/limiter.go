package auth

import (
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Failed sign-in limits. A client address is refused after 20 failures
// within the window (it may be shared by many people). A user name is
// locked after 5, but the lock refuses only addresses that have failed
// recently: see Authenticator.SignIn for why.
const (
	limitWindow  = 15 * time.Minute
	maxUserFails = 5
	maxIPFails   = 20
	// maxTracked and maxTrackedBytes bound the limiter's memory under a
	// flood of made-up user names or addresses: by count, and by the bytes
	// of keys and entries (user names are at most maxUsername bytes, but
	// the bound must not rest on a check elsewhere).
	maxTracked      = 100_000
	maxTrackedBytes = 16 << 20
	// entryBytes is what one tracked attempt is counted as.
	entryBytes = 32
)

// entry is one sign-in attempt from an address, or one failure of a user
// name: pending while its password is being checked.
type entry struct {
	at      time.Time
	pending bool
}

// Limiter counts failed sign-ins per client address, and per user name for
// names that are not accounts (accounts keep theirs in the database, so a
// restart does not lift a lock). It is in memory: replicas of a cluster
// each count their own (docs/scaling.md), while account locks, in the
// database, hold on every replica. Every attempt takes its address's slot
// before its password is checked, so attempts in flight count.
type Limiter struct {
	now func() time.Time

	mu    sync.Mutex
	fails map[string][]*entry
	bytes int // of keys and entries in fails
}

// NewLimiter returns a Limiter using now as its clock.
func NewLimiter(now func() time.Time) *Limiter {
	return &Limiter{now: now, fails: map[string][]*entry{}}
}

func userKey(u string) string { return "u:" + strings.ToLower(u) }

// ipKey groups IPv6 clients by /64, the block one subscriber usually
// gets, so that hopping between addresses of one block does not reset the
// count.
func ipKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err == nil && a.Is6() && !a.Is4In6() {
		p, _ := a.Prefix(64)
		return "i:" + p.String()
	}
	return "i:" + ip
}

// Reservation is an attempt's slot in its address's count, taken before
// the password is checked. Fail keeps it as a failure; Cancel gives it
// back (a success, or an attempt that never got checked).
type Reservation struct {
	l   *Limiter
	key string
	e   *entry
}

// Reserve takes a slot for an attempt from ip, unless the address is at
// its limit; then it says how long to wait.
func (l *Limiter) Reserve(ip string) (*Reservation, time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	k := ipKey(ip)
	f := l.recent(k, now)
	if len(f) >= maxIPFails {
		return nil, f[len(f)-maxIPFails].at.Add(limitWindow).Sub(now), false
	}
	e := &entry{at: now, pending: true}
	l.add(k, e, now)
	return &Reservation{l: l, key: k, e: e}, 0, true
}

// Fail records the reserved attempt as a failure.
func (r *Reservation) Fail() {
	r.l.mu.Lock()
	defer r.l.mu.Unlock()
	r.e.pending = false
}

// Cancel gives the slot back.
func (r *Reservation) Cancel() {
	r.l.mu.Lock()
	defer r.l.mu.Unlock()
	f := r.l.fails[r.key]
	for i, e := range f {
		if e == r.e {
			r.l.fails[r.key] = append(f[:i:i], f[i+1:]...)
			r.l.bytes -= entryBytes
			if len(r.l.fails[r.key]) == 0 {
				r.l.drop(r.key)
			}
			return
		}
	}
}

// Clean reports whether the reservation's address has no failures within
// the window: attempts still in flight do not count.
func (r *Reservation) Clean() bool {
	r.l.mu.Lock()
	defer r.l.mu.Unlock()
	for _, e := range r.l.recent(r.key, r.l.now()) {
		if !e.pending {
			return false
		}
	}
	return true
}

// NameLocked reports until when a user name that is not an account is
// locked, the zero time if it is not. Made-up names lock like accounts so
// that the answers do not tell which names exist.
func (l *Limiter) NameLocked(name string) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.recent(userKey(name), l.now())
	if len(f) < maxUserFails {
		return time.Time{}
	}
	return f[len(f)-maxUserFails].at.Add(limitWindow)
}

// FailName records a failure of a user name that is not an account.
func (l *Limiter) FailName(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	k := userKey(name)
	if f := l.recent(k, now); len(f) >= maxUserFails {
		// Enough to stay locked: keep the newest only.
		l.fails[k] = f[1:]
		l.bytes -= entryBytes
	}
	l.add(k, &entry{at: now}, now)
}

// add appends e to key's entries, first making room within the bounds.
func (l *Limiter) add(key string, e *entry, now time.Time) {
	_, exists := l.fails[key]
	need := entryBytes
	if !exists {
		need += len(key)
	}
	full := func() bool { return !exists && len(l.fails) >= maxTracked || l.bytes+need > maxTrackedBytes }
	if full() {
		for k := range l.fails {
			l.recent(k, now)
		}
		// Still full: forget arbitrary keys rather than grow, a sixteenth
		// at a time so that a flood does not sweep at every attempt.
		n := len(l.fails)/16 + 1
		for k := range l.fails {
			if n <= 0 && !full() {
				break
			}
			if k != key {
				l.drop(k)
				n--
			}
		}
	}
	if _, ok := l.fails[key]; !ok {
		l.bytes += len(key)
	}
	l.fails[key] = append(l.fails[key], e)
	l.bytes += entryBytes
}

// drop forgets a key and its entries.
func (l *Limiter) drop(key string) {
	f, ok := l.fails[key]
	if !ok {
		return
	}
	l.bytes -= len(key) + len(f)*entryBytes
	delete(l.fails, key)
}

// recent drops entries older than the window and returns the rest.
// Pending entries never expire: their attempt is still running.
func (l *Limiter) recent(key string, now time.Time) []*entry {
	f := l.fails[key]
	kept := f[:0]
	for _, e := range f {
		if e.pending || now.Sub(e.at) < limitWindow {
			kept = append(kept, e)
		}
	}
	if len(kept) == 0 {
		l.drop(key)
		return nil
	}
	l.bytes -= (len(f) - len(kept)) * entryBytes
	clear(f[len(kept):])
	l.fails[key] = kept
	return kept
}
