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

// Resource returns the resource with id if u may open sessions on it (a
// terminal or a desktop). It returns store.ErrNotFound for a missing
// resource and ErrDenied for one u has no such grant for; disabled users
// are denied everything.
func (a *Authorizer) Resource(ctx context.Context, u store.User, id int64) (store.Resource, error) {
	return a.resource(ctx, u, id, func(acc store.Access) bool { return acc.Terminal })
}

// Files returns the resource with id if u may browse its files (SFTP),
// with the same errors as Resource. Only SSH resources have files.
func (a *Authorizer) Files(ctx context.Context, u store.User, id int64) (store.Resource, error) {
	r, err := a.resource(ctx, u, id, func(acc store.Access) bool { return acc.Files })
	if err == nil && r.Protocol != "ssh" {
		return store.Resource{}, ErrDenied
	}
	return r, err
}

func (a *Authorizer) resource(ctx context.Context, u store.User, id int64, allowed func(store.Access) bool) (store.Resource, error) {
	r, err := a.store.ResourceByID(ctx, id)
	if err != nil {
		return store.Resource{}, fmt.Errorf("look up resource %d: %w", id, err)
	}
	if u.Disabled {
		return store.Resource{}, ErrDenied
	}
	acc, err := a.store.AccessTo(ctx, u.ID, id)
	if err != nil {
		return store.Resource{}, fmt.Errorf("check grant of %s on %s: %w", u.Name, r.Name, err)
	}
	if !allowed(acc) {
		return store.Resource{}, ErrDenied
	}
	return r, nil
}
