package oidc

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Limits on the sign-ins a browser has under way.
const (
	// PendingTTL is how long a sign-in started at the portal may take at
	// the provider.
	PendingTTL = 10 * time.Minute
	// maxPending bounds the sign-ins one browser has under way (tabs).
	maxPending = 8
	// maxPendingJSON bounds the kept list as the web session stores it.
	maxPendingJSON = 16 << 10
	// clockSkew is the leeway given to the provider's clock.
	clockSkew = time.Minute
)

// Pending is a sign-in sent to the provider and not yet back: what the
// callback must match. It is kept in the browser's web session (bound to
// that browser), used once, and expires after PendingTTL.
type Pending struct {
	Provider string `json:"p"`
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Next     string `json:"x,omitempty"`
	// Test marks an admin's test sign-in: its claims are shown, nobody is
	// signed in.
	Test    bool  `json:"t,omitempty"`
	Expires int64 `json:"e"` // Unix ms
}

// PendingList is a browser's sign-ins under way.
type PendingList []Pending

// DecodePending reads the list the web session keeps; anything unreadable
// is an empty list.
func DecodePending(s string) PendingList {
	if s == "" || len(s) > maxPendingJSON {
		return nil
	}
	var l PendingList
	if json.Unmarshal([]byte(s), &l) != nil || len(l) > maxPending {
		return nil
	}
	return l
}

// Encode is the list as the web session keeps it.
func (l PendingList) Encode() string {
	if len(l) == 0 {
		return ""
	}
	b, _ := json.Marshal(l)
	return string(b)
}

// Add appends p, dropping expired entries and, beyond maxPending, the
// oldest.
func (l PendingList) Add(p Pending, now time.Time) PendingList {
	out := l.live(now)
	if len(out) >= maxPending {
		out = out[len(out)-maxPending+1:]
	}
	return append(out, p)
}

// Take finds the unexpired sign-in with state and removes it, so that a
// state works once.
func (l PendingList) Take(state string, now time.Time) (Pending, PendingList, bool) {
	out := l.live(now)
	for i, p := range out {
		if state != "" && p.State == state {
			return p, slices.Delete(out, i, i+1), true
		}
	}
	return Pending{}, out, false
}

func (l PendingList) live(now time.Time) PendingList {
	out := make(PendingList, 0, len(l)+1)
	for _, p := range l {
		if now.UnixMilli() < p.Expires {
			out = append(out, p)
		}
	}
	return out
}

func random() string {
	var b [32]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Begin starts a sign-in: the URL to send the browser to, and what to keep
// for the callback.
func (p *Provider) Begin(name, redirectURL, next string, test bool, now time.Time) (string, Pending) {
	pend := Pending{Provider: name, State: random(), Nonce: random(), Verifier: oauth2.GenerateVerifier(),
		Next: next, Test: test, Expires: now.Add(PendingTTL).UnixMilli()}
	u := p.oauth2Config(redirectURL).AuthCodeURL(pend.State, gooidc.Nonce(pend.Nonce), oauth2.S256ChallengeOption(pend.Verifier))
	return u, pend
}

// Reasons a sign-in is refused, as the audit log records them.
const (
	ReasonBadSignature  = "bad signature"
	ReasonWrongAudience = "wrong audience"
	ReasonWrongIssuer   = "wrong issuer"
	ReasonExpired       = "expired"
	ReasonNonce         = "nonce mismatch"
	ReasonState         = "replayed or unknown state"
	ReasonUnreachable   = "provider unreachable"
	ReasonCodeRefused   = "code refused by the provider"
	ReasonProviderError = "provider returned an error"
	ReasonClaims        = "unusable claims"
	ReasonEmailDomain   = "e-mail domain not allowed"
)

// Refusal is a sign-in the portal refuses: Reason is one of the Reason
// constants; Err the detail.
type Refusal struct {
	Reason string
	Err    error
}

func (e *Refusal) Error() string {
	if e.Err == nil {
		return e.Reason
	}
	return e.Reason + ": " + e.Err.Error()
}

func (e *Refusal) Unwrap() error { return e.Err }

func refuse(reason string, err error) error { return &Refusal{Reason: reason, Err: err} }

// Result is a finished sign-in.
type Result struct {
	Identity Identity
	// Claims are the ID token's claims (with the userinfo's added), for the
	// admin's Test page.
	Claims map[string]json.RawMessage
	// RawIDToken is the ID token, kept as the hint for RP-initiated logout.
	RawIDToken string
}

// Finish completes a sign-in at the callback: it exchanges code (with the
// PKCE verifier), verifies the ID token (signature, issuer, audience,
// expiry, nonce), reads the userinfo when the provider has one, and
// extracts the user. Every failure is a *Refusal.
func (p *Provider) Finish(ctx context.Context, redirectURL string, pend Pending, code string, now time.Time) (Result, error) {
	if code == "" || len(code) > maxClaimValue*4 {
		return Result{}, refuse(ReasonProviderError, errors.New("the provider sent no usable authorization code"))
	}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, p.client)
	tok, err := p.oauth2Config(redirectURL).Exchange(ctx, code, oauth2.VerifierOption(pend.Verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			return Result{}, refuse(ReasonCodeRefused, fmt.Errorf("token endpoint answered %d %s", re.Response.StatusCode, trunc(re.ErrorCode)))
		}
		return Result{}, unreachable("exchange the code", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return Result{}, refuse(ReasonProviderError, errors.New("the token response holds no ID token"))
	}
	// Signature (and a supported algorithm) first; then each claim check
	// ourselves so the refusal names what was wrong.
	v := p.op.Verifier(&gooidc.Config{SkipClientIDCheck: true, SkipExpiryCheck: true, SkipIssuerCheck: true})
	idt, err := v.Verify(gooidc.ClientContext(ctx, p.client), raw)
	if err != nil {
		if unreachableErr(err) {
			return Result{}, unreachable("fetch the provider's keys", err)
		}
		return Result{}, refuse(ReasonBadSignature, err)
	}
	if err := checkToken(idt, p.cfg, pend.Nonce, now); err != nil {
		return Result{}, err
	}
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
			return Result{}, refuse(ReasonBadSignature, err)
		}
	}
	claims := map[string]json.RawMessage{}
	if err := idt.Claims(&claims); err != nil {
		return Result{}, refuse(ReasonClaims, err)
	}
	if p.endpoints.UserInfo != "" && tok.AccessToken != "" {
		ui, err := p.op.UserInfo(gooidc.ClientContext(ctx, p.client), oauth2.StaticTokenSource(tok))
		if err != nil {
			if unreachableErr(err) {
				return Result{}, unreachable("read the userinfo", err)
			}
			return Result{}, refuse(ReasonProviderError, fmt.Errorf("read the userinfo: %w", err))
		}
		if ui.Subject != idt.Subject {
			return Result{}, refuse(ReasonClaims, errors.New("the userinfo is about another subject than the ID token"))
		}
		var more map[string]json.RawMessage
		if err := ui.Claims(&more); err != nil {
			return Result{}, refuse(ReasonClaims, err)
		}
		for k, v := range more {
			if _, ok := claims[k]; !ok && len(claims) < maxClaims {
				claims[k] = v
			}
		}
	}
	id, err := extract(claims, p.cfg)
	if err != nil {
		return Result{Claims: claims}, err
	}
	return Result{Identity: id, Claims: claims, RawIDToken: raw}, nil
}

// checkToken checks a verified ID token's issuer, audience, expiry and
// nonce.
func checkToken(idt *gooidc.IDToken, c Config, nonce string, now time.Time) error {
	if idt.Issuer != c.IssuerURL {
		return refuse(ReasonWrongIssuer, fmt.Errorf("issued by %q", trunc(idt.Issuer)))
	}
	if !slices.Contains(idt.Audience, c.ClientID) {
		return refuse(ReasonWrongAudience, fmt.Errorf("issued for %q, not this portal's client id", trunc(fmt.Sprint(idt.Audience))))
	}
	var azp struct {
		AZP string `json:"azp"`
	}
	if len(idt.Audience) > 1 {
		if err := idt.Claims(&azp); err != nil || azp.AZP != c.ClientID {
			return refuse(ReasonWrongAudience, errors.New("several audiences and another authorized party"))
		}
	}
	if idt.Expiry.IsZero() || now.After(idt.Expiry.Add(clockSkew)) {
		return refuse(ReasonExpired, fmt.Errorf("expired at %s", idt.Expiry.UTC().Format(time.RFC3339)))
	}
	if !idt.IssuedAt.IsZero() && idt.IssuedAt.After(now.Add(clockSkew)) {
		return refuse(ReasonExpired, fmt.Errorf("issued in the future, at %s", idt.IssuedAt.UTC().Format(time.RFC3339)))
	}
	if nonce == "" || idt.Nonce != nonce {
		return refuse(ReasonNonce, errors.New("the ID token's nonce is not the one this sign-in sent"))
	}
	return nil
}

func unreachable(doing string, err error) error {
	return refuse(ReasonUnreachable, fmt.Errorf("%s: %w: %w", doing, ErrUnreachable, err))
}

// unreachableErr reports whether err is the network failing or timing out
// rather than the provider answering badly.
func unreachableErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, errTooLarge)
}
