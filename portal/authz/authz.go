// Package authz decides whether a signed-in user may use a resource. Grants
// are checked here; the connection authorization hook joins them later.
package authz

import (
	"context"
	"errors"
	"fmt"

	"github.com/keyway-dev/keyway/portal/store"
)

// ErrDenied is returned when a user has no grant for a resource. Callers
// answer it exactly like a missing resource so ids cannot be probed.
var ErrDenied = errors.New("not granted")

// Authorizer answers access questions from the store's grants.
type Authorizer struct {
	store *store.Store
}

// New returns an Authorizer backed by st.
func New(st *store.Store) *Authorizer { return &Authorizer{store: st} }

// Resource returns the resource with id if u may connect to it. It returns
// store.ErrNotFound for a missing resource and ErrDenied for one u has no
// grant for; disabled users are denied everything.
func (a *Authorizer) Resource(ctx context.Context, u store.User, id int64) (store.Resource, error) {
	r, err := a.store.ResourceByID(ctx, id)
	if err != nil {
		return store.Resource{}, fmt.Errorf("look up resource %d: %w", id, err)
	}
	if u.Disabled {
		return store.Resource{}, ErrDenied
	}
	ok, err := a.store.CanUse(ctx, u.ID, id)
	if err != nil {
		return store.Resource{}, fmt.Errorf("check grant of %s on %s: %w", u.Name, r.Name, err)
	}
	if !ok {
		return store.Resource{}, ErrDenied
	}
	return r, nil
}
