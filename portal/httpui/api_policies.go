package httpui

import (
	"net/http"
	"time"

	"github.com/keyway-dev/keyway/portal/store"
)

// apiPolicy is a policy as the API shows it: its input fields and what the
// portal adds.
type apiPolicy struct {
	ID int64 `json:"id"`
	policyInput
	// ScopeName is the resource's or group's name; "" for everyone.
	ScopeName string    `json:"scope_name"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func toAPIPolicy(p store.Policy) apiPolicy {
	return apiPolicy{ID: p.ID, policyInput: policyInputOf(p), ScopeName: p.ScopeName, CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt}
}

func (s *Server) apiListPolicies(w http.ResponseWriter, r *http.Request, _ store.User) error {
	ps, err := s.Store.ListPolicies(r.Context())
	if err != nil {
		return err
	}
	out := make([]apiPolicy, 0, len(ps))
	for _, p := range ps {
		out = append(out, toAPIPolicy(p))
	}
	return writeJSON(w, http.StatusOK, out)
}

// apiCreatePolicy takes a policy; fields left out take the defaults of a
// new policy (everyone, UTC, everything allowed, enabled).
func (s *Server) apiCreatePolicy(w http.ResponseWriter, r *http.Request, actor store.User) error {
	in := newPolicyInput()
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	p, err := s.createPolicy(r, actor, in)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, toAPIPolicy(p))
}

func (s *Server) apiGetPolicy(w http.ResponseWriter, r *http.Request, _ store.User) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	p, err := s.Store.PolicyByID(r.Context(), id)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, toAPIPolicy(p))
}

// apiUpdatePolicy changes the fields given and keeps the others; a list
// given replaces the whole list.
func (s *Server) apiUpdatePolicy(w http.ResponseWriter, r *http.Request, actor store.User) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	old, err := s.Store.PolicyByID(r.Context(), id)
	if err != nil {
		return err
	}
	in := policyInputOf(old)
	// Lists are replaced, not merged into: decoding into a filled slice
	// would keep the old elements past the new list's end.
	in.Networks, in.Windows = nil, nil
	keep := policyInputOf(old)
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	if in.Networks == nil {
		in.Networks = keep.Networks
	}
	if in.Windows == nil {
		in.Windows = keep.Windows
	}
	p, err := s.updatePolicy(r, actor, id, in)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, toAPIPolicy(p))
}

func (s *Server) apiDeletePolicy(w http.ResponseWriter, r *http.Request, actor store.User) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	if _, err := s.deletePolicy(r, actor, id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
