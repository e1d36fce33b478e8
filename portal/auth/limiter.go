package auth

import (
	"strings"
	"sync"
	"time"
)

// Failed sign-in limits: a username is paused after 5 failures within the
// window, a client address after 20 (it may be shared by many people).
const (
	limitWindow  = 15 * time.Minute
	maxUserFails = 5
	maxIPFails   = 20
	// maxTracked bounds memory under a flood of made-up usernames.
	maxTracked = 100_000
)

// Limiter counts failed sign-ins per username and per client address.
type Limiter struct {
	now func() time.Time

	mu    sync.Mutex
	fails map[string][]time.Time
}

// NewLimiter returns a Limiter using now as its clock.
func NewLimiter(now func() time.Time) *Limiter {
	return &Limiter{now: now, fails: map[string][]time.Time{}}
}

func userKey(u string) string { return "u:" + strings.ToLower(u) }
func ipKey(ip string) string  { return "i:" + ip }

// Check reports whether a sign-in may be tried now, and if not, how long to
// wait.
func (l *Limiter) Check(user, ip string) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	var wait time.Duration
	for _, k := range []struct {
		key string
		max int
	}{{userKey(user), maxUserFails}, {ipKey(ip), maxIPFails}} {
		f := l.recent(k.key, now)
		if len(f) >= k.max {
			if w := f[len(f)-k.max].Add(limitWindow).Sub(now); w > wait {
				wait = w
			}
		}
	}
	return wait, wait == 0
}

// recent drops failures older than the window and returns the rest.
func (l *Limiter) recent(key string, now time.Time) []time.Time {
	f := l.fails[key]
	i := 0
	for i < len(f) && now.Sub(f[i]) >= limitWindow {
		i++
	}
	f = f[i:]
	if len(f) == 0 {
		delete(l.fails, key)
		return nil
	}
	l.fails[key] = f
	return f
}

// Fail records a failed sign-in.
func (l *Limiter) Fail(user, ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if len(l.fails) >= maxTracked {
		for k := range l.fails {
			l.recent(k, now)
		}
		if len(l.fails) >= maxTracked {
			// Still full: forget an arbitrary entry rather than grow.
			for k := range l.fails {
				delete(l.fails, k)
				break
			}
		}
	}
	for _, k := range []string{userKey(user), ipKey(ip)} {
		f := append(l.recent(k, now), now)
		if len(f) > maxIPFails {
			f = f[len(f)-maxIPFails:]
		}
		l.fails[k] = f
	}
}

// Succeed clears the username's failures after a good sign-in.
func (l *Limiter) Succeed(user, ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.fails, userKey(user))
}
