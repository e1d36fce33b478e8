package rdp

/*
#include <freerdp/freerdp.h>
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
)

// Kinds of failure, for errors.Is; an *Error wraps one of them.
var (
	ErrAuthentication      = errors.New("the server rejected the user name or password")
	ErrNoCredentials       = errors.New("the server asks for a user name and password and none were given")
	ErrAccountLocked       = errors.New("the account is locked out")
	ErrAccountDisabled     = errors.New("the account is disabled")
	ErrAccountExpired      = errors.New("the account has expired")
	ErrAccountRestricted   = errors.New("account restrictions prevent signing in (time of day, workstation or a blank password)")
	ErrPasswordExpired     = errors.New("the password has expired")
	ErrPasswordMustChange  = errors.New("the password must be changed before signing in")
	ErrLogonTypeNotGranted = errors.New("the user is not allowed to sign in remotely")
	ErrAccessDenied        = errors.New("the server denied access")
	ErrNegotiation         = errors.New("security negotiation failed")
	ErrTLS                 = errors.New("the TLS handshake failed")
	ErrRefused             = errors.New("the server refused the connection")
	ErrTimeout             = errors.New("timed out connecting to the server")
	ErrUnreachable         = errors.New("the server cannot be reached")
	ErrServerClosed        = errors.New("the server closed the connection")
	ErrLoggedOff           = errors.New("the user logged off")
	ErrDisconnected        = errors.New("the server ended the session")
	ErrClosed              = errors.New("the session is closed")
	ErrProtocol            = errors.New("RDP protocol error")
	ErrPinnedNeedsTLS      = errors.New("the server's certificate is pinned, and only NLA or TLS can check it")
)

// Error is a connection or session failure: a Kind for errors.Is, with
// FreeRDP's code and words.
type Error struct {
	Kind error
	// Code is FreeRDP's error code (freerdp_get_last_error), 0 if none.
	Code uint32
	// Name is FreeRDP's name for Code, e.g. ERRCONNECT_LOGON_FAILURE.
	Name string
	// Detail says more, in words.
	Detail string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Kind.Error())
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	if e.Code != 0 {
		fmt.Fprintf(&b, " (%s, 0x%08X)", e.Name, e.Code)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Kind }

// CertificateError is a server certificate that does not match its pin.
type CertificateError struct {
	Offered, Pinned string
}

func (e *CertificateError) Error() string {
	return fmt.Sprintf("the server's certificate %s does not match the pinned %s: it was replaced, or someone is in the middle", e.Offered, e.Pinned)
}

// FreeRDP error classes and codes (freerdp/error.h).
const (
	classErrInfo = 1 << 16
	classConnect = 2 << 16

	errInfoRPCDisconnect       = classErrInfo | 0x01
	errInfoRPCLogoff           = classErrInfo | 0x02
	errInfoIdleTimeout         = classErrInfo | 0x03
	errInfoLogonTimeout        = classErrInfo | 0x04
	errInfoOtherConnection     = classErrInfo | 0x05
	errInfoDeniedConnection    = classErrInfo | 0x07
	errInfoInsufficientPrivs   = classErrInfo | 0x09
	errInfoFreshCredentials    = classErrInfo | 0x0A
	errInfoDisconnectByUser    = classErrInfo | 0x0B
	errInfoLogoffByUser        = classErrInfo | 0x0C
	connDNS                    = classConnect | 0x04
	connDNSNotFound            = classConnect | 0x05
	connFailed                 = classConnect | 0x06
	connTLSFailed              = classConnect | 0x08
	connAuthFailed             = classConnect | 0x09
	connInsufficientPrivileges = classConnect | 0x0A
	connCancelled              = classConnect | 0x0B
	connNegoFailed             = classConnect | 0x0C
	connTransportFailed        = classConnect | 0x0D
	connPasswordExpired        = classConnect | 0x0E
	connPasswordCertainly      = classConnect | 0x0F
	connKDCUnreachable         = classConnect | 0x11
	connAccountDisabled        = classConnect | 0x12
	connPasswordMustChange     = classConnect | 0x13
	connLogonFailure           = classConnect | 0x14
	connWrongPassword          = classConnect | 0x15
	connAccessDenied           = classConnect | 0x16
	connAccountRestriction     = classConnect | 0x17
	connAccountLockedOut       = classConnect | 0x18
	connAccountExpired         = classConnect | 0x19
	connLogonTypeNotGranted    = classConnect | 0x1A
	connNoCredentials          = classConnect | 0x1B
)

// protocolHybrid is NLA (CredSSP) in the selected protocol.
const protocolHybrid = 0x2

// connectKinds are FreeRDP's codes that say what went wrong by
// themselves.
var connectKinds = map[uint32]error{
	connAuthFailed:             ErrAuthentication,
	connLogonFailure:           ErrAuthentication,
	connWrongPassword:          ErrAuthentication,
	connNoCredentials:          ErrNoCredentials,
	connAccountLockedOut:       ErrAccountLocked,
	connAccountDisabled:        ErrAccountDisabled,
	connAccountExpired:         ErrAccountExpired,
	connAccountRestriction:     ErrAccountRestricted,
	connPasswordExpired:        ErrPasswordExpired,
	connPasswordCertainly:      ErrPasswordExpired,
	connPasswordMustChange:     ErrPasswordMustChange,
	errInfoFreshCredentials:    ErrPasswordMustChange,
	connLogonTypeNotGranted:    ErrLogonTypeNotGranted,
	connAccessDenied:           ErrAccessDenied,
	connInsufficientPrivileges: ErrAccessDenied,
	errInfoInsufficientPrivs:   ErrAccessDenied,
	errInfoDeniedConnection:    ErrAccessDenied,
	connKDCUnreachable:         ErrUnreachable,
	connDNS:                    ErrUnreachable,
	connDNSNotFound:            ErrUnreachable,
}

// connectState is what the session saw of a failed connection.
type connectState struct {
	code          uint32
	nla           bool // NLA was selected
	certSeen      bool // the TLS handshake reached the certificate
	postConnected bool
	certErr       *CertificateError
	security      string
	logs          []string
}

// classify names a failed connection.
func classify(st connectState) error {
	e := &Error{Code: st.code, Name: errorName(st.code), Detail: errorString(st.code)}
	if st.certErr != nil {
		return st.certErr
	}
	if k, ok := connectKinds[st.code]; ok {
		e.Kind = k
		return e
	}
	switch st.code {
	case connNegoFailed:
		e.Kind = ErrNegotiation
		e.Detail = negotiationDetail(st.security, st.logs)
	case connTLSFailed:
		e.Kind = ErrTLS
	case connTransportFailed:
		if st.nla && st.certSeen && !st.postConnected {
			// Servers that do not send an NTSTATUS in CredSSP (FreeRDP's
			// own, xrdp) close the connection on a bad password.
			e.Kind = ErrAuthentication
			e.Detail = "the server closed the connection during NLA authentication"
		} else if !st.certSeen && st.security != "rdp" {
			e.Kind = ErrNegotiation
			e.Detail = "the server closed the connection before the TLS handshake; " + negotiationDetail(st.security, st.logs)
		} else {
			e.Kind = ErrServerClosed
		}
	case connCancelled:
		e.Kind = context.Canceled
	case 0:
		e.Kind = ErrProtocol
		e.Detail = "the connection failed without a reason"
	default:
		if st.code&0xFFFF0000 == classErrInfo {
			e.Kind = ErrDisconnected
		} else {
			e.Kind = ErrProtocol
		}
	}
	return e
}

// negotiationDetail says what was asked for and, when FreeRDP logged it,
// what the server wanted.
func negotiationDetail(security string, logs []string) string {
	asked := map[string]string{"any": "NLA or TLS", "nla": "NLA only", "tls": "TLS only", "rdp": "standard RDP security only"}[security]
	d := "the client offered " + asked
	for _, l := range logs {
		for _, w := range []string{"HYBRID_REQUIRED_BY_SERVER", "SSL_REQUIRED_BY_SERVER", "SSL_NOT_ALLOWED_BY_SERVER", "SSL_CERT_NOT_ON_SERVER", "INCONSISTENT_FLAGS", "SSL_WITH_USER_AUTH_REQUIRED_BY_SERVER"} {
			if strings.Contains(l, w) {
				d += "; the server answered " + w + " (" + negoFailureWords[w] + ")"
				if w == "SSL_NOT_ALLOWED_BY_SERVER" && security != "rdp" {
					d += ". Standard RDP security cannot verify the server, so someone in the network path could read the password; " +
						"it is used only when an administrator chooses it for the resource"
				}
				return d
			}
		}
	}
	return d
}

var negoFailureWords = map[string]string{
	"HYBRID_REQUIRED_BY_SERVER":             "it requires NLA",
	"SSL_REQUIRED_BY_SERVER":                "it requires TLS",
	"SSL_NOT_ALLOWED_BY_SERVER":             "it allows standard RDP security only",
	"SSL_CERT_NOT_ON_SERVER":                "it has no certificate for TLS",
	"INCONSISTENT_FLAGS":                    "inconsistent flags",
	"SSL_WITH_USER_AUTH_REQUIRED_BY_SERVER": "it requires TLS with user authentication",
}

// classifyEnd names why an established session ended.
func classifyEnd(code uint32, logonInfo string) error {
	e := &Error{Code: code, Name: errorName(code), Detail: errorString(code)}
	switch code {
	case errInfoLogoffByUser, errInfoRPCLogoff:
		e.Kind = ErrLoggedOff
	case 0, connTransportFailed:
		e.Kind, e.Code, e.Detail = ErrServerClosed, 0, ""
	default:
		e.Kind = ErrDisconnected
	}
	if logonInfo != "" {
		e.Detail = strings.TrimPrefix(e.Detail+"; "+logonInfo, "; ")
	}
	return e
}

func errorName(code uint32) string {
	if code == 0 {
		return ""
	}
	return C.GoString(C.freerdp_get_last_error_name(C.UINT32(code)))
}

func errorString(code uint32) string {
	if code == 0 {
		return ""
	}
	return C.GoString(C.freerdp_get_last_error_string(C.UINT32(code)))
}

// connectError names why kw_connect failed, on the session thread.
func (s *Session) connectError(code, selected uint32) error {
	if err := s.pipe.lastDialError(); err != nil {
		// A fallback or retry could not reach the server again.
		return err
	}
	if code == connFailed {
		// FreeRDP's automatic retry after its transport failed: the
		// failure that matters is the first one.
		code = connTransportFailed
	}
	return classify(connectState{
		code: code, nla: selected&protocolHybrid != 0, certSeen: s.certChecks > 0,
		postConnected: s.postConnected, certErr: s.certErr, security: s.cfg.Security, logs: s.logs,
	})
}

// dialError names a failed TCP connect.
func dialError(err error) error {
	e := &Error{Kind: ErrUnreachable, Detail: err.Error()}
	var ne net.Error
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded) && !errors.As(err, &ne):
		return err
	case errors.Is(err, syscall.ECONNREFUSED):
		e.Kind = ErrRefused
	case errors.As(err, &ne) && ne.Timeout():
		e.Kind = ErrTimeout
	case errors.As(err, &dnsErr):
		e.Detail = "the name does not resolve: " + err.Error()
	}
	return e
}

// endError names why the session loop ended.
func (s *Session) endError(code uint32) error { return classifyEnd(code, s.logonInfo) }
