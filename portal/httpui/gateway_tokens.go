package httpui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/keyway-dev/keyway/gateway/metrics"
	"github.com/keyway-dev/keyway/gateway/wire"
	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/store"
	"github.com/keyway-dev/keyway/web/ui"
)

// Gateway access tokens (wire.Token): a gateway sends one beside its
// signature with every config pull and recording upload, and renews it
// itself at wire.TokenPath well before it expires.

// maxTokenWarning is how long before expiry a token not yet renewed is
// shown, logged and audited as expiring; shorter lifetimes warn at a
// quarter of theirs, past the point (two thirds) the gateway renews at.
const maxTokenWarning = 7 * 24 * time.Hour

// tokenLifetime is how long the tokens the portal issues live.
func (s *Server) tokenLifetime() time.Duration {
	if l := s.GatewayTokenLifetime; l > 0 && l < wire.MaxTokenLifetime {
		return l
	}
	return wire.MaxTokenLifetime
}

func (s *Server) tokenWarning() time.Duration { return min(maxTokenWarning, s.tokenLifetime()/4) }

// verifyGatewayToken checks text as an access token of gateway g.
func (s *Server) verifyGatewayToken(ctx context.Context, g store.Gateway, text string) (wire.Token, store.GatewayCredentials, error) {
	c, err := s.Store.GatewayCredentials(ctx, g.ID)
	if err != nil {
		return wire.Token{}, c, err
	}
	if text == "" {
		return wire.Token{}, c, errNoToken
	}
	tok, err := wire.VerifyToken(text, strconv.FormatInt(g.ID, 10), s.Now(), func(slot string) ([]byte, int64, error) {
		k, err := c.Key(slot)
		return k.Secret, k.Generation, err
	})
	return tok, c, err
}

// errNoToken refuses a request without an access token.
var errNoToken = errors.New("the request carries no access token (a gateway older than the portal, or one that never got a token)")

// isTokenError tells a refused token from a failure of the portal.
func isTokenError(err error) bool {
	return errors.Is(err, wire.ErrTokenMalformed) || errors.Is(err, wire.ErrTokenExpired) ||
		errors.Is(err, wire.ErrTokenRevoked) || errors.Is(err, wire.ErrTokenSignature) || errors.Is(err, errNoToken)
}

// authGatewayToken checks the access token of a request authGateway found
// signed by g, and notes what the gateway reports. On failure it has
// answered the request.
func (s *Server) authGatewayToken(w http.ResponseWriter, r *http.Request, g store.Gateway, what string) bool {
	tok, c, err := s.verifyGatewayToken(r.Context(), g, r.Header.Get(wire.HeaderGatewayToken))
	if err != nil && !isTokenError(err) {
		s.Logger.Error("gateway "+what+": read its keys", "gateway", g.Name, "err", err)
		writeJSONError(w, http.StatusInternalServerError, "the portal cannot read the gateway's keys")
		return false
	}
	if err != nil {
		s.refuseToken(r, g, what, err)
		writeJSONError(w, http.StatusUnauthorized, "access token refused: "+err.Error())
		return false
	}
	s.noteRenewError(r, g)
	if tok.Slot != c.ActiveSlot {
		// The admin switched slots: the gateway renews now, onto the new
		// slot, so the old key can be regenerated without downtime.
		w.Header().Set(wire.HeaderTokenRenew, c.ActiveSlot)
	}
	if left := tok.ExpiresAt.Sub(s.Now()); left < s.tokenWarning() {
		w.Header().Set(wire.HeaderTokenRenew, c.ActiveSlot)
		s.alertOnce(g.ID, "expiring", tok.ExpiresAt, func() {
			s.Metrics.GatewayToken(g.Name, metrics.TokenExpiring)
			s.Logger.Warn("gateway access token expires soon and was not renewed", "gateway", g.Name, "expires", tok.ExpiresAt, "left", left.Round(time.Second))
			s.record(r, audit.Event{Actor: "gateway:" + g.Name, Action: audit.ActionGatewayTokenExpiring, Target: g.Name, Outcome: audit.OutcomeFailure,
				Reason: "access token expires at " + tok.ExpiresAt.UTC().Format(time.RFC3339) + " and was not renewed"})
		})
	}
	return true
}

// refuseToken logs every refused token, and audits a kind of refusal of
// a gateway once until it has a working token again.
func (s *Server) refuseToken(r *http.Request, g store.Gateway, what string, err error) {
	s.Logger.Warn("gateway "+what+" refused: access token "+tokenProblem(err), "gateway", g.Name, "client", s.ClientInfo.Addr(r), "err", err)
	s.Metrics.GatewayToken(g.Name, metrics.TokenRefused)
	s.alertOnce(g.ID, "refused:"+tokenProblem(err), time.Time{}, func() {
		s.record(r, audit.Event{Actor: "gateway:" + g.Name, Action: audit.ActionGatewayTokenRefused, Target: g.Name, Outcome: audit.OutcomeFailure,
			Reason: err.Error(), Details: map[string]string{"request": what}})
	})
}

func tokenProblem(err error) string {
	switch {
	case errors.Is(err, wire.ErrTokenExpired):
		return "expired"
	case errors.Is(err, wire.ErrTokenRevoked):
		return "made with a regenerated key"
	case errors.Is(err, wire.ErrTokenSignature), errors.Is(err, wire.ErrTokenMalformed):
		return "invalid"
	}
	return "missing"
}

// alertOnce runs f unless the same alert of gateway id (kind, at) ran last.
func (s *Server) alertOnce(id int64, kind string, at time.Time, f func()) {
	key := kind + "@" + strconv.FormatInt(at.UnixMilli(), 10)
	s.tokenAlertsMu.Lock()
	if s.tokenAlerts == nil {
		s.tokenAlerts = map[int64]string{}
	}
	last := s.tokenAlerts[id]
	s.tokenAlerts[id] = key
	s.tokenAlertsMu.Unlock()
	if last != key {
		f()
	}
}

// noteRenewError records the renewal failure a gateway reports, if any.
func (s *Server) noteRenewError(r *http.Request, g store.Gateway) {
	msg := r.Header.Get(wire.HeaderTokenRenewError)
	if msg == "" {
		return
	}
	msg = strings.Map(func(c rune) rune {
		if unicode.IsPrint(c) {
			return c
		}
		return ' '
	}, msg)
	if len(msg) > wire.MaxRenewError {
		msg = msg[:wire.MaxRenewError]
	}
	if err := s.Store.SetGatewayRenewError(r.Context(), g.ID, msg, s.Now()); err != nil {
		s.Logger.Error("record gateway renewal error", "gateway", g.Name, "err", err)
	}
	s.Logger.Warn("gateway reports that renewing its access token failed", "gateway", g.Name, "err", msg)
	s.Metrics.GatewayToken(g.Name, metrics.TokenRenewFailed)
	s.record(r, audit.Event{Actor: "gateway:" + g.Name, Action: audit.ActionGatewayTokenRenewError, Target: g.Name, Outcome: audit.OutcomeFailure, Reason: msg})
}

// gatewayRenewToken issues a gateway a new access token on its active
// slot, for its valid token, or as its first token once its key was pinned.
func (s *Server) gatewayRenewToken(w http.ResponseWriter, r *http.Request) {
	const what = "token renewal"
	g, body, ok := s.authGatewaySignature(w, r, what)
	if !ok {
		return
	}
	if body != wire.EmptyBody {
		writeJSONError(w, http.StatusBadRequest, "a token renewal has no body")
		return
	}
	s.noteRenewError(r, g)
	how := "renewal"
	_, c, err := s.verifyGatewayToken(r.Context(), g, r.Header.Get(wire.HeaderGatewayToken))
	if err != nil && !isTokenError(err) {
		s.Logger.Error("gateway "+what+": read its keys", "gateway", g.Name, "err", err)
		writeJSONError(w, http.StatusInternalServerError, "the portal cannot read the gateway's keys")
		return
	}
	if err != nil {
		// Without a valid token, only a gateway whose key was just
		// pinned gets one.
		if berr := s.Store.TakeGatewayBootstrap(r.Context(), g.ID); berr != nil {
			if !errors.Is(berr, store.ErrNoBootstrap) {
				s.Logger.Error("gateway "+what, "gateway", g.Name, "err", berr)
				writeJSONError(w, http.StatusInternalServerError, "the portal cannot issue tokens now")
				return
			}
			s.refuseToken(r, g, what, err)
			writeJSONError(w, http.StatusUnauthorized, "access token refused: "+err.Error()+"; paste the gateway's public key again on its page to let it get a new one")
			return
		}
		how = "first token"
	}
	key, err := c.Key(c.ActiveSlot)
	if err != nil {
		s.serverErrorJSON(w, s.Logger, err)
		return
	}
	now := time.UnixMilli(s.Now().UnixMilli())
	t := wire.Token{GatewayID: strconv.FormatInt(g.ID, 10), Slot: c.ActiveSlot, Generation: key.Generation, IssuedAt: now, ExpiresAt: now.Add(s.tokenLifetime())}
	if err := s.Store.RecordGatewayToken(r.Context(), g.ID, t.Slot, t.IssuedAt, t.ExpiresAt); err != nil {
		s.serverErrorJSON(w, s.Logger, err)
		return
	}
	s.alertOnce(g.ID, "issued", t.ExpiresAt, func() {})
	s.Metrics.GatewayToken(g.Name, metrics.TokenIssued)
	s.Logger.Info("gateway access token issued", "gateway", g.Name, "how", how, "slot", t.Slot, "expires", t.ExpiresAt)
	s.record(r, audit.Event{Actor: "gateway:" + g.Name, Action: audit.ActionGatewayTokenIssue, Target: g.Name, Outcome: audit.OutcomeSuccess,
		Details: map[string]string{"how": how, "slot": t.Slot, "expires": t.ExpiresAt.UTC().Format(time.RFC3339)}})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(wire.TokenGrant{Token: wire.MakeToken(t, key.Secret), Slot: t.Slot, IssuedAt: t.IssuedAt, ExpiresAt: t.ExpiresAt})
}

// regenerateGatewayKeyForm replaces one of a gateway's keys: every token
// made with it stops working.
func (s *Server) regenerateGatewayKeyForm(w http.ResponseWriter, r *http.Request) {
	actor, _ := currentUser(r)
	id, err := pathID(r)
	slot := r.PathValue("slot")
	if slot != store.SlotPrimary && slot != store.SlotSecondary {
		http.NotFound(w, r)
		return
	}
	var g store.Gateway
	if err == nil {
		g, err = s.Store.GatewayByID(r.Context(), id)
	}
	var c store.GatewayCredentials
	if err == nil {
		c, err = s.Store.GatewayCredentials(r.Context(), id)
	}
	var k store.GatewayKey
	if err == nil {
		k, err = s.Store.RegenerateGatewayKey(r.Context(), id, slot)
	}
	if err == nil && g.Embedded {
		// The portal runs the embedded gateway: it may fetch a new token.
		err = s.Store.SetGatewayKey(r.Context(), id, g.PublicKey)
	}
	if err != nil {
		s.actionError(w, r, err, "/admin/gateways")
		return
	}
	s.Logger.Warn("gateway key regenerated: tokens made with the old key are refused", "gateway", g.Name, "slot", slot, "by", actor.Name)
	s.record(r, audit.Event{Actor: actor.Name, Action: audit.ActionGatewayKeyRegenerate, Target: g.Name, Outcome: audit.OutcomeSuccess,
		Details: map[string]string{"slot": slot, "generation": strconv.FormatInt(k.Generation, 10)}})
	msg := fmt.Sprintf("The %s key of %s was regenerated; tokens made with the old one are refused.", slot, quote(g.Name))
	if c.TokenSlot == slot && !g.Embedded {
		msg += " The gateway's token was made with it: it is cut off until its public key is pasted again."
	}
	s.done(w, r, msg, fmt.Sprintf("/admin/gateways/%d", g.ID))
}

// gatewayTokenSlotForm chooses the key slot new tokens are made on; the
// gateway moves to it at its next request.
func (s *Server) gatewayTokenSlotForm(w http.ResponseWriter, r *http.Request) {
	actor, _ := currentUser(r)
	id, err := pathID(r)
	var g store.Gateway
	if err == nil {
		g, err = s.Store.GatewayByID(r.Context(), id)
	}
	slot := r.PostFormValue("slot")
	if err == nil {
		err = s.Store.SetGatewayTokenSlot(r.Context(), id, slot)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			err = fieldErrors{"slot": "Choose the primary or the secondary key."}
		}
	}
	if err != nil {
		s.actionError(w, r, err, "/admin/gateways")
		return
	}
	s.record(r, audit.Event{Actor: actor.Name, Action: audit.ActionGatewayTokenSlot, Target: g.Name, Outcome: audit.OutcomeSuccess,
		Details: map[string]string{"slot": slot}})
	s.done(w, r, fmt.Sprintf("%s gets its next token from its %s key; it renews at its next config pull.", quote(g.Name), slot), fmt.Sprintf("/admin/gateways/%d", g.ID))
}

// tokenView fills the key and token part of a gateway's page.
func (s *Server) tokenView(ctx context.Context, v *ui.GatewayView, g store.Gateway) error {
	c, err := s.Store.GatewayCredentials(ctx, g.ID)
	if err != nil {
		return err
	}
	now := s.Now()
	v.ActiveSlot, v.TokenSlot, v.TokenIssuedAt, v.TokenExpiresAt = c.ActiveSlot, c.TokenSlot, c.TokenIssuedAt, c.TokenExpiresAt
	v.RenewError, v.RenewErrorAt = c.RenewError, c.RenewErrorAt
	for _, k := range []struct {
		slot string
		key  store.GatewayKey
	}{{store.SlotPrimary, c.Primary}, {store.SlotSecondary, c.Secondary}} {
		v.Keys = append(v.Keys, ui.GatewayKeyView{Slot: k.slot, RegeneratedAt: k.key.RegeneratedAt, Generation: k.key.Generation,
			Active: k.slot == c.ActiveSlot, InUse: k.slot == c.TokenSlot})
	}
	switch exp := c.TokenExpiresAt; {
	case exp.IsZero():
	case !now.Before(exp):
		v.TokenWarnings = append(v.TokenWarnings, "The gateway's access token has expired: it cannot pull its config or upload recordings. Paste its public key again to let it get a new token.")
	case exp.Sub(now) < s.tokenWarning():
		v.TokenWarnings = append(v.TokenWarnings, fmt.Sprintf("The gateway's access token expires in %s and was not renewed (it renews at two thirds of its life): check that it reaches the portal.",
			exp.Sub(now).Round(time.Minute)))
	}
	if c.RenewError != "" {
		v.TokenWarnings = append(v.TokenWarnings, "The gateway's last token renewal failed: "+c.RenewError)
	}
	return nil
}
