package control

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/keyway-dev/keyway/gateway/spool"
	"github.com/keyway-dev/keyway/gateway/wire"
)

// maxStatus bounds the portal's answers about uploads.
const maxStatus = 64 << 10

// Uploads sends a spool's recordings to the portal (it is the
// spool.Uploader's Sink), each request signed with the gateway's key like
// the config pull. See wire.RecordingsPath for the protocol.
type Uploads struct {
	base      string
	gatewayID string
	identity  *wire.Identity
	tokens    *Tokens
	client    *http.Client
	now       func() time.Time
}

// NewUploads returns the Sink for o's portal.
func NewUploads(o Options) *Uploads {
	tr := &http.Transport{
		TLSClientConfig:     portalTLS(o),
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		TLSHandshakeTimeout: 10 * time.Second,
		// Counted from the end of the request body: the portal checks the
		// checksum of the whole recording before it answers.
		ResponseHeaderTimeout: 2 * time.Minute,
	}
	// No overall timeout: a large recording on a slow link takes its time;
	// the Uploader's context ends it.
	return &Uploads{
		base: strings.TrimRight(o.PortalURL, "/") + wire.RecordingsPath, gatewayID: o.GatewayID,
		identity: o.Identity, tokens: o.Tokens, client: &http.Client{Transport: tr}, now: time.Now,
	}
}

// Status asks how many bytes of the recording of session id the portal
// holds.
func (u *Uploads) Status(ctx context.Context, id string) (int64, error) {
	st, code, err := u.do(ctx, http.MethodGet, id, nil, nil, wire.EmptyBody)
	if err != nil {
		return 0, err
	}
	if code != http.StatusOK {
		return 0, fmt.Errorf("portal answered the upload status with HTTP %d: %s", code, st.Error)
	}
	return st.Size, nil
}

// Upload sends the recording from up.Offset on and returns the SHA-256 of
// the whole recording as the portal has it. A checksum the portal refused
// is returned without an error, so the Uploader sees the mismatch, keeps
// the recording and sends it again from the start.
func (u *Uploads) Upload(ctx context.Context, up spool.Upload) (string, error) {
	m := up.Meta
	if up.Index != nil {
		st, code, err := u.do(ctx, http.MethodPut, m.SessionID+wire.IndexSuffix, func(req *http.Request) {
			req.Header.Set("Content-Type", "application/octet-stream")
		}, bytes.NewReader(up.Index), sha256.Sum256(up.Index))
		if err != nil {
			return "", fmt.Errorf("send key-frame index: %w", err)
		}
		if code != http.StatusOK {
			return "", fmt.Errorf("portal refused the key-frame index (HTTP %d): %s", code, st.Error)
		}
	}
	hdr, err := wire.EncodeRecordingMeta(wire.RecordingMeta{
		SessionID: m.SessionID, User: m.User, Resource: m.Resource, Protocol: m.Protocol, ClientAddr: m.ClientAddr,
		Format: string(m.Format), Start: m.Start, End: m.End, Complete: m.Complete, Size: m.Size, SHA256: m.SHA256,
	})
	if err != nil {
		return "", err
	}
	// The signature covers the body's digest, so the part sent is read
	// twice: once for the digest, once to send.
	data, ok := up.Data.(io.ReadSeeker)
	if !ok {
		return "", fmt.Errorf("upload of %s: its data cannot be read twice", m.SessionID)
	}
	h := sha256.New()
	if _, err := io.Copy(h, data); err != nil {
		return "", fmt.Errorf("read recording %s: %w", m.SessionID, err)
	}
	if _, err := data.Seek(0, io.SeekStart); err != nil {
		return "", fmt.Errorf("read recording %s: %w", m.SessionID, err)
	}
	var digest [sha256.Size]byte
	h.Sum(digest[:0])
	q := url.Values{"offset": {strconv.FormatInt(up.Offset, 10)}}
	st, code, err := u.do(ctx, http.MethodPut, m.SessionID+"?"+q.Encode(), func(req *http.Request) {
		req.Header.Set(wire.HeaderRecording, hdr)
		req.Header.Set("Content-Type", "application/octet-stream")
		req.ContentLength = m.Size - up.Offset
		req.Body = io.NopCloser(data)
		if req.ContentLength == 0 {
			req.Body = http.NoBody
		}
	}, data, digest)
	switch {
	case err != nil:
		return "", err
	case code == http.StatusOK && st.Stored:
		return st.SHA256, nil
	case code == http.StatusUnprocessableEntity && st.SHA256 != "":
		return st.SHA256, nil
	}
	return "", fmt.Errorf("portal refused the recording (HTTP %d): %s", code, st.Error)
}

// do sends one signed request about recording path and decodes the
// portal's RecordingStatus.
func (u *Uploads) do(ctx context.Context, method, path string, edit func(*http.Request), body io.Reader, digest [sha256.Size]byte) (wire.RecordingStatus, int, error) {
	var st wire.RecordingStatus
	req, err := http.NewRequestWithContext(ctx, method, u.base+path, body)
	if err != nil {
		return st, 0, err
	}
	if edit != nil {
		edit(req)
	}
	sent := u.tokens.attach(req)
	wire.SignRequest(req, u.identity, u.gatewayID, u.now(), digest)
	resp, err := u.client.Do(req)
	if err != nil {
		return st, 0, fmt.Errorf("reach portal: %w", err)
	}
	defer resp.Body.Close()
	u.tokens.answered(resp, sent)
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxStatus))
	if err != nil {
		return st, resp.StatusCode, fmt.Errorf("read portal's answer: %w", err)
	}
	if err := json.Unmarshal(raw, &st); err != nil && resp.StatusCode == http.StatusOK {
		return st, resp.StatusCode, fmt.Errorf("portal's answer: %w", err)
	}
	if st.Error == "" && resp.StatusCode != http.StatusOK {
		st.Error = strings.TrimSpace(string(raw))
	}
	return st, resp.StatusCode, nil
}

// StartUploads runs a spool.Uploader of sp's recordings to o's portal in
// the background until stop is called; stop waits for it.
func StartUploads(ctx context.Context, sp *spool.Spool, o Options) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	u := spool.NewUploader(sp, NewUploads(o), spool.UploaderConfig{Logger: o.Logger})
	done := make(chan struct{})
	go func() {
		defer close(done)
		u.Run(ctx)
	}()
	return func() { cancel(); <-done }
}
