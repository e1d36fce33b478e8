// Package wire is the protocol between portal and gateway: mutual TLS with
// pinned Ed25519 keys, one length-prefixed JSON request and response per
// connection, and the framed terminal stream that follows. It imports only
// the standard library so both sides, and tests, share one definition.
package wire

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
)

// Limits checked before anything is allocated.
const (
	maxRequestSize  = 64 << 10
	maxResponseSize = 16 << 10
)

// Request kinds.
const (
	KindSession = "session"
	KindRelay   = "relay"
)

// Protocols a session request may name.
const (
	ProtocolSSH  = "ssh"
	ProtocolSFTP = "sftp"
	ProtocolVNC  = "vnc"
	ProtocolRDP  = "rdp"
	// ProtocolTCP is a plain TCP stream from a native client (keyway
	// tunnel, keyway proxy): after the answer the connection carries the
	// target's bytes unchanged, both ways.
	ProtocolTCP = "tcp"
)

// Code is a machine-readable reason a gateway refused a session.
type Code string

// Refusal codes.
const (
	CodeBadRequest      Code = "bad_request"
	CodeUnsupported     Code = "unsupported"
	CodeUnreachable     Code = "target_unreachable"
	CodeRefused         Code = "target_refused"
	CodeTimeout         Code = "target_timeout"
	CodeAuthFailed      Code = "auth_failed"
	CodeHostKeyMismatch Code = "host_key_mismatch"
	CodeForbiddenTarget Code = "target_forbidden"
	CodeGatewayDown     Code = "gateway_unreachable"
	CodeInternal        Code = "internal"
	// CodeRecordingUnavailable refuses a session whose resource requires
	// recording when the gateway cannot record it (spool disk full, no
	// spool, a protocol it cannot record yet).
	CodeRecordingUnavailable Code = "recording_unavailable"
	// CodeDraining refuses a session because the gateway is restarting:
	// it lets its running sessions finish and takes no new ones. The
	// portal then chooses another gateway of the segment, if it has one.
	CodeDraining Code = "gateway_draining"
)

// Secret is a credential. It marshals to JSON as itself, for the wire, but
// prints and logs redacted.
type Secret string

// String redacts the secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// LogValue redacts the secret in slog output.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// Target is the address the gateway dials.
type Target struct {
	Host string `json:"host"`
	Port int    `json:"port"`
}

// String returns host:port.
func (t Target) String() string {
	if bytes.ContainsRune([]byte(t.Host), ':') {
		return fmt.Sprintf("[%s]:%d", t.Host, t.Port)
	}
	return fmt.Sprintf("%s:%d", t.Host, t.Port)
}

// Credentials are injected by the portal; users never see them.
type Credentials struct {
	Username   string `json:"username"`
	Password   Secret `json:"password,omitempty"`
	PrivateKey Secret `json:"private_key,omitempty"`
}

// Terminal describes the pty a terminal session asks for.
type Terminal struct {
	Term string `json:"term"`
	Cols int    `json:"cols"`
	Rows int    `json:"rows"`
}

// Request opens a session: the first message on every connection.
type Request struct {
	Kind        string      `json:"kind"`
	Protocol    string      `json:"protocol"`
	SessionID   string      `json:"session_id"`
	User        string      `json:"user"`
	ClientAddr  string      `json:"client_addr"`
	Resource    string      `json:"resource"`
	Target      Target      `json:"target"`
	Credentials Credentials `json:"credentials"`
	// HostKey is the target's pinned SSH host key in authorized_keys form;
	// empty means trust on first use and report the key seen.
	HostKey  string    `json:"host_key,omitempty"`
	Terminal *Terminal `json:"terminal,omitempty"`
	// Desktop restricts a desktop session; nil allows everything.
	Desktop *Desktop `json:"desktop,omitempty"`
	// Relay, for kind "relay", names the gateway to forward the rest of the
	// connection to; the portal then runs its own TLS handshake with that
	// gateway through this one, which only copies ciphertext.
	Relay *Relay `json:"relay,omitempty"`
	// Recording asks the gateway to record the session; nil records
	// nothing.
	Recording *Recording `json:"recording,omitempty"`
	// Allow, for a tcp session, are the only addresses and ports the
	// gateway may dial for it (besides its segment's allowed networks):
	// the target host may be a name the gateway resolves, and the
	// resolved address must fall inside them. Empty allows the target as
	// named.
	Allow NetRules `json:"allow,omitempty"`
}

// Recording is how a session is recorded.
type Recording struct {
	// Required refuses the session when the gateway cannot record it;
	// otherwise the session runs unrecorded and the gateway logs why.
	Required bool `json:"required,omitempty"`
	// Input records what the user typed too. Off by default: typed input
	// holds passwords given to sudo and the like.
	Input bool `json:"input,omitempty"`
}

// Desktop are a desktop session's options and restrictions, enforced by
// the gateway.
type Desktop struct {
	ViewOnly       bool `json:"view_only,omitempty"`
	NoClipboardIn  bool `json:"no_clipboard_in,omitempty"`
	NoClipboardOut bool `json:"no_clipboard_out,omitempty"`
	// IndexedImages: the browser decodes few-colour images sent as
	// indexed.Mimetype (recordings/indexed), faster than as PNG.
	IndexedImages bool `json:"indexed_images,omitempty"`
	// ColorDepth is the colour depth in bits: for VNC 24 (the default
	// when 0), 16 or 8; for RDP 32 (the default), 24 or 16.
	ColorDepth int `json:"color_depth,omitempty"`

	// RDP only.
	// Width and Height are the initial desktop size: the resource's, or
	// the browser window's when the resource fits the browser.
	Width  int `json:"width,omitempty"`
	Height int `json:"height,omitempty"`
	// FixedSize keeps Width×Height: the desktop does not follow the
	// browser window.
	FixedSize bool `json:"fixed_size,omitempty"`
	// Domain is the sign-in domain.
	Domain string `json:"domain,omitempty"`
	// Security is "any" (the default), "nla", "tls" or "rdp".
	Security string `json:"security,omitempty"`
	// IgnoreCert accepts any server certificate instead of pinning it.
	IgnoreCert bool `json:"ignore_cert,omitempty"`
	// KeyboardLayout is a Windows keyboard layout id; 0 is US (0x0409).
	KeyboardLayout uint32 `json:"keyboard_layout,omitempty"`
}

// Bounds of a desktop size from the browser or a resource.
const (
	MinDesktopSize = 200
	MaxDesktopSize = 8192
)

// MaxClipboard bounds clipboard text a browser sends to a desktop, in
// bytes of UTF-8: the gateway drops a longer one, so the portal's page
// refuses it before sending.
const MaxClipboard = 1 << 20

// RDP security modes a request may name.
var rdpSecurity = map[string]bool{"": true, "any": true, "nla": true, "tls": true, "rdp": true}

func (d *Desktop) validate(protocol string) error {
	depths := map[int]bool{0: true, 8: true, 16: true, 24: true}
	if protocol == ProtocolRDP {
		depths = map[int]bool{0: true, 16: true, 24: true, 32: true}
	}
	switch {
	case !depths[d.ColorDepth]:
		return fmt.Errorf("colour depth %d is not available for %s", d.ColorDepth, protocol)
	case (d.Width != 0 || d.Height != 0) && (d.Width < MinDesktopSize || d.Height < MinDesktopSize || d.Width > MaxDesktopSize || d.Height > MaxDesktopSize):
		return fmt.Errorf("desktop size %dx%d out of range", d.Width, d.Height)
	case !rdpSecurity[d.Security]:
		return fmt.Errorf("unknown RDP security mode %q", d.Security)
	case len(d.Domain) > 255:
		return errors.New("domain too long")
	}
	return nil
}

// Relay is the far gateway of a relayed connection.
type Relay struct {
	GatewayID string `json:"gateway_id"`
	Address   string `json:"address"`
}

// maxTerminal bounds terminal sizes from untrusted peers.
const maxTerminal = 1000

// Validate checks what a gateway needs before dialing anything.
func (r *Request) Validate() error {
	if r.Kind == KindRelay {
		if r.Relay == nil || r.Relay.Address == "" || len(r.Relay.Address) > 300 {
			return errors.New("relay request without a gateway address")
		}
		return nil
	}
	switch {
	case r.Kind != KindSession:
		return fmt.Errorf("unknown request kind %q", r.Kind)
	case r.Protocol != ProtocolSSH && r.Protocol != ProtocolSFTP && r.Protocol != ProtocolVNC && r.Protocol != ProtocolRDP && r.Protocol != ProtocolTCP:
		return fmt.Errorf("unknown protocol %q", r.Protocol)
	case r.Target.Host == "" || len(r.Target.Host) > 253:
		return errors.New("target host missing or too long")
	case r.Target.Port < 1 || r.Target.Port > 65535:
		return fmt.Errorf("target port %d out of range", r.Target.Port)
	}
	if err := r.Allow.validate(); err != nil {
		return err
	}
	if t := r.Terminal; t != nil {
		if t.Cols < 1 || t.Cols > maxTerminal || t.Rows < 1 || t.Rows > maxTerminal {
			return fmt.Errorf("terminal size %dx%d out of range", t.Cols, t.Rows)
		}
		if len(t.Term) > 64 {
			return errors.New("terminal type too long")
		}
	}
	if d := r.Desktop; d != nil {
		if err := d.validate(r.Protocol); err != nil {
			return err
		}
	}
	return nil
}

// CertPrefix starts the pin of a target's TLS certificate (VNC over
// VeNCrypt, RDP), so it shares the resource's pinned-key field with SSH
// host keys: "tls-cert SHA256:…".
const CertPrefix = "tls-cert "

// CertFingerprint is the pin of a certificate: the SHA-256 of its DER
// bytes, written like an SSH fingerprint.
func CertFingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:])
}

// Response answers a Request.
type Response struct {
	OK      bool   `json:"ok"`
	Code    Code   `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
	// HostKey is the key the target presented (authorized_keys form), so the
	// portal can pin it on first use or offer it to an admin on a mismatch.
	HostKey            string `json:"host_key,omitempty"`
	HostKeyFingerprint string `json:"host_key_fingerprint,omitempty"`
}

// Err returns the refusal in r as an *Error, or nil when r is ok.
func (r *Response) Err() error {
	if r.OK {
		return nil
	}
	return &Error{Code: r.Code, Message: r.Message}
}

// Error is a gateway's refusal: a code for programs and a sentence for
// people.
type Error struct {
	Code    Code
	Message string
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// Errorf makes an *Error with a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// WriteRequest sends r with its length prefix.
func WriteRequest(w io.Writer, r *Request) error { return writeMessage(w, r, maxRequestSize) }

// ReadRequest reads one request.
func ReadRequest(r io.Reader) (*Request, error) {
	var req Request
	if err := readMessage(r, &req, maxRequestSize); err != nil {
		return nil, fmt.Errorf("read request: %w", err)
	}
	return &req, nil
}

// WriteResponse sends r with its length prefix.
func WriteResponse(w io.Writer, r *Response) error { return writeMessage(w, r, maxResponseSize) }

// ReadResponse reads one response.
func ReadResponse(r io.Reader) (*Response, error) {
	var resp Response
	if err := readMessage(r, &resp, maxResponseSize); err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	return &resp, nil
}

func writeMessage(w io.Writer, v any, limit int) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode message: %w", err)
	}
	if len(body) > limit {
		return fmt.Errorf("message of %d bytes exceeds the limit of %d", len(body), limit)
	}
	buf := make([]byte, 4+len(body))
	binary.BigEndian.PutUint32(buf, uint32(len(body)))
	copy(buf[4:], body)
	_, err = w.Write(buf)
	return err
}

// readMessage decodes one length-prefixed JSON object strictly: unknown
// fields and trailing bytes are errors, so a confused peer fails loudly.
func readMessage(r io.Reader, v any, limit int) error {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || n > uint32(limit) {
		return fmt.Errorf("message length %d outside 1..%d", n, limit)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return fmt.Errorf("message body: %w", err)
	}
	return readJSON(body, v)
}

// readJSON decodes one JSON object strictly.
func readJSON(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("decode message: %w", err)
	}
	if dec.More() {
		return errors.New("trailing data after message")
	}
	return nil
}
