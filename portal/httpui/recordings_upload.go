package httpui

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/keyway-dev/keyway/gateway/wire"
	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/gateways"
	"github.com/keyway-dev/keyway/portal/store"
	"github.com/keyway-dev/keyway/recordings/asciicast"
	"github.com/keyway-dev/keyway/recordings/storage"
)

// Limits on recording uploads.
const (
	// maxRecordingUpload bounds one recording: days of a busy terminal.
	maxRecordingUpload = 4 << 30
	// maxSearchText bounds the plain text of one recording kept for
	// search; the rest of a huge recording still plays, it is only not
	// found by words past this.
	maxSearchText = 8 << 20
)

func isRecordingUpload(r *http.Request) bool {
	return r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, wire.RecordingsPath)
}

// gatewaySession authenticates the gateway calling a recording route and
// returns it with the route's session ID, or answers the error itself.
// The body's digest the signature covers is returned for handlers that
// read a body.
func (s *Server) gatewaySession(w http.ResponseWriter, r *http.Request, what string) (store.Gateway, string, [sha256.Size]byte, bool) {
	gw, body, ok := s.authGateway(w, r, what)
	if !ok {
		return store.Gateway{}, "", body, false
	}
	id := r.PathValue("session")
	if !storage.ValidKey(id) {
		writeJSONError(w, http.StatusBadRequest, "invalid session ID")
		return store.Gateway{}, "", body, false
	}
	return gw, id, body, true
}

// sessionLedger remembers, in the store, the recorded sessions the
// gateway pool opens (gateways.Ledger).
type sessionLedger struct{ s *Server }

func (l sessionLedger) Opened(ctx context.Context, gw gateways.Gateway, req *wire.Request, started, opened time.Time) error {
	id, err := strconv.ParseInt(gw.ID, 10, 64)
	if err != nil {
		return fmt.Errorf("gateway id %q: %w", gw.ID, err)
	}
	return l.s.Store.AddGatewaySession(ctx, store.GatewaySession{SessionID: req.SessionID, GatewayID: id, User: req.User,
		Resource: req.Resource, Protocol: req.Protocol, ClientAddr: req.ClientAddr, StartedAt: started, OpenedAt: opened})
}

func (l sessionLedger) Closed(id string, at time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.s.Store.EndGatewaySession(ctx, id, at); err != nil {
		l.s.Logger.Error("record the end of a session", "session", id, "err", err)
	}
}

// maxRecordingClockSkew is how far a gateway's clock may be off the
// portal's in a recording's times (as in its signed requests).
const maxRecordingClockSkew = 2 * time.Minute

// errNotThisSession refuses a recording that does not match a session
// the portal opened through the uploading gateway.
type errNotThisSession struct{ reason string }

func (e errNotThisSession) Error() string { return e.reason }

// checkSession checks an uploaded recording's metadata against the session
// the portal opened through gw: user, resource, protocol, and times within
// the session's (give or take the clocks' skew). A gateway cannot upload
// a recording of a session it never ran. The embedded gateway's recordings
// of sessions the portal has no record of (made before it kept them) are
// let through: its spool is the portal's own.
func (s *Server) checkSession(ctx context.Context, gw store.Gateway, m wire.RecordingMeta) error {
	gs, err := s.Store.GatewaySessionByID(ctx, m.SessionID)
	if errors.Is(err, store.ErrNotFound) && gw.Embedded {
		return nil
	}
	if errors.Is(err, store.ErrNotFound) || (err == nil && gs.GatewayID != gw.ID) {
		return errNotThisSession{fmt.Sprintf("the portal opened no session %s through gateway %s", m.SessionID, gw.Name)}
	}
	if err != nil {
		return err
	}
	var bad []string
	if m.User != gs.User {
		bad = append(bad, "user")
	}
	if m.Resource != gs.Resource {
		bad = append(bad, "resource")
	}
	if m.Protocol != gs.Protocol {
		bad = append(bad, "protocol")
	}
	end := gs.EndedAt
	if end.IsZero() || end.After(s.Now()) {
		end = s.Now() // still running, or the portal stopped before it ended
	}
	if m.Start.Before(gs.StartedAt.Add(-maxRecordingClockSkew)) || m.Start.After(gs.OpenedAt.Add(maxRecordingClockSkew)) {
		bad = append(bad, "start")
	}
	if m.End.After(end.Add(maxRecordingClockSkew)) {
		bad = append(bad, "end")
	}
	if len(bad) > 0 {
		return errNotThisSession{fmt.Sprintf("the recording's %s differ from session %s as the portal opened it", strings.Join(bad, ", "), m.SessionID)}
	}
	return nil
}

// refuseSession answers an upload checkSession refused, and audits it.
func (s *Server) refuseSession(w http.ResponseWriter, r *http.Request, gw store.Gateway, m wire.RecordingMeta, err error, log *slog.Logger) {
	var ns errNotThisSession
	if !errors.As(err, &ns) {
		s.serverErrorJSON(w, log, err)
		return
	}
	log.ErrorContext(r.Context(), "recording upload refused: it does not match a session the portal opened through this gateway", "err", err, "user", m.User, "resource", m.Resource)
	s.record(r, audit.Event{Actor: "gateway:" + gw.Name, Action: audit.ActionRecordingUpload, Target: m.Resource,
		Outcome: audit.OutcomeFailure, Reason: ns.reason, Details: map[string]string{"session": m.SessionID, "user": m.User}})
	writeJSONError(w, http.StatusForbidden, "recording refused: "+ns.reason)
}

// digestReader hashes what is read through it.
type digestReader struct {
	r io.Reader
	h hash.Hash
}

func (d *digestReader) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	d.h.Write(p[:n])
	return n, err
}

// lockUpload takes the upload lock of session id's recording, or answers
// 409 when another upload of it holds the lock (here or, in a cluster, on
// another replica), 503 when the lock could not be asked for; the
// gateway retries either.
func (s *Server) lockUpload(w http.ResponseWriter, id string) (unlock func(), ok bool) {
	unlock, err := s.Recordings.Lock(id)
	if errors.Is(err, storage.ErrBusy) {
		writeJSONError(w, http.StatusConflict, "an upload of this recording is already running")
		return nil, false
	}
	if err != nil {
		s.Logger.Error("recording upload: take its lock", "session", id, "err", err)
		writeJSONError(w, http.StatusServiceUnavailable, "the portal cannot take this recording's upload lock now; try again")
		return nil, false
	}
	return unlock, true
}

// recordingStatus tells a gateway how much of a recording the portal
// holds, so an interrupted upload resumes.
func (s *Server) recordingStatus(w http.ResponseWriter, r *http.Request) {
	gw, id, _, ok := s.gatewaySession(w, r, "recording status")
	if !ok {
		return
	}
	rec, err := s.Store.RecordingBySession(r.Context(), id)
	switch {
	case err == nil && rec.GatewayID != gw.ID:
		writeJSONError(w, http.StatusConflict, "a recording of this session was stored by another gateway")
		return
	case err == nil:
		writeJSON(w, http.StatusOK, wire.RecordingStatus{Size: rec.Size, Stored: true, SHA256: rec.SHA256})
		return
	case !errors.Is(err, store.ErrNotFound):
		s.Logger.ErrorContext(r.Context(), "recording status", "session", id, "err", err)
		writeJSONError(w, http.StatusInternalServerError, "internal error")
		return
	}
	size, err := s.Recordings.PartSize(r.Context(), id)
	if err != nil {
		s.Logger.ErrorContext(r.Context(), "recording status", "session", id, "err", err)
		writeJSONError(w, http.StatusInternalServerError, "internal error")
		return
	}
	writeJSON(w, http.StatusOK, wire.RecordingStatus{Size: size})
}

// recordingUpload receives a recording, or its rest after an interrupted
// upload, from the gateway that made it; checks its size and SHA-256;
// stores the file and then its metadata and searchable text. A recording
// is only confirmed (with its checksum) once both are stored, so the
// gateway keeps its spool copy until then.
func (s *Server) recordingUpload(w http.ResponseWriter, r *http.Request) {
	gw, signedBody, ok := s.authGateway(w, r, "recording upload")
	if !ok {
		return
	}
	id := r.PathValue("session")
	log := s.Logger.With("gateway", gw.Name, "session", id)
	meta, err := wire.DecodeRecordingMeta(r.Header.Get(wire.HeaderRecording))
	if err == nil {
		err = checkRecordingMeta(id, meta)
	}
	offset, oerr := strconv.ParseInt(r.URL.Query().Get("offset"), 10, 64)
	if r.URL.Query().Get("offset") == "" {
		offset, oerr = 0, nil
	}
	if err == nil && (oerr != nil || offset < 0 || offset > meta.Size) {
		err = fmt.Errorf("offset %q outside the recording", r.URL.Query().Get("offset"))
	}
	if err != nil {
		log.WarnContext(r.Context(), "recording upload refused", "err", err)
		writeJSONError(w, http.StatusBadRequest, "invalid recording upload: "+err.Error())
		return
	}
	ext, ok := recordingExt[meta.Format]
	if !ok {
		writeJSONError(w, http.StatusUnsupportedMediaType, "this portal stores terminal (asciicast) and desktop (guac) recordings, not "+meta.Format)
		return
	}
	if err := s.checkSession(r.Context(), gw, meta); err != nil {
		s.refuseSession(w, r, gw, meta, err, log)
		return
	}
	unlock, ok := s.lockUpload(w, id)
	if !ok {
		return
	}
	defer unlock()
	ctx := context.WithoutCancel(r.Context())

	// A recording already stored (the gateway did not hear the answer) is
	// confirmed again, not stored twice.
	if rec, err := s.Store.RecordingBySession(ctx, id); err == nil {
		if rec.GatewayID != gw.ID || !strings.EqualFold(rec.SHA256, meta.SHA256) {
			writeJSONError(w, http.StatusConflict, "another recording of this session is already stored")
			return
		}
		writeJSON(w, http.StatusOK, wire.RecordingStatus{Size: rec.Size, Stored: true, SHA256: rec.SHA256})
		return
	} else if !errors.Is(err, store.ErrNotFound) {
		s.serverErrorJSON(w, log, err)
		return
	}

	rel := storage.Path(id, meta.Start, ext)
	body := &digestReader{r: http.MaxBytesReader(w, r.Body, meta.Size-offset+1), h: sha256.New()}
	size, err := s.Recordings.Append(ctx, id, rel, offset, body, meta.Size)
	if err == nil && size == meta.Size && !bytes.Equal(body.h.Sum(nil), signedBody[:]) {
		// Not what the gateway signed: whatever changed it, none of it is
		// kept, and the gateway sends the recording again.
		s.Recordings.Discard(ctx, id)
		log.WarnContext(r.Context(), "recording upload refused: the body differs from the one the gateway signed")
		writeJSONError(w, http.StatusBadRequest, "the body differs from the digest the gateway signed; nothing was kept")
		return
	}
	switch {
	case errors.Is(err, storage.ErrOffset):
		writeJSON(w, http.StatusConflict, wire.RecordingStatus{Size: size, Error: err.Error()})
		return
	case errors.Is(err, storage.ErrSize):
		s.Recordings.Discard(ctx, id)
		log.WarnContext(r.Context(), "recording upload over its announced size: discarded", "err", err)
		writeJSONError(w, http.StatusUnprocessableEntity, err.Error())
		return
	case err != nil:
		// The bytes that arrived are kept for the next attempt.
		log.WarnContext(r.Context(), "recording upload interrupted", "received", size, "err", err)
		writeJSON(w, http.StatusBadRequest, wire.RecordingStatus{Size: size, Error: "upload interrupted: " + err.Error()})
		return
	case size < meta.Size:
		writeJSON(w, http.StatusBadRequest, wire.RecordingStatus{Size: size, Error: fmt.Sprintf("upload ended at byte %d of %d", size, meta.Size)})
		return
	}
	sum, err := s.Recordings.Commit(ctx, id, rel, meta.Size, meta.SHA256)
	if errors.Is(err, storage.ErrChecksum) || errors.Is(err, storage.ErrSize) {
		log.ErrorContext(r.Context(), "recording refused: its checksum does not match; the gateway keeps it and sends it again", "err", err)
		s.Metrics.RecordingUploaded(false, 0)
		s.record(r, audit.Event{Actor: "gateway:" + gw.Name, Action: audit.ActionRecordingUpload, Target: meta.Resource,
			Outcome: audit.OutcomeFailure, Reason: "checksum mismatch: the upload was discarded", Details: map[string]string{"session": id, "user": meta.User}})
		writeJSON(w, http.StatusUnprocessableEntity, wire.RecordingStatus{SHA256: sum, Error: err.Error()})
		return
	}
	if err != nil {
		s.serverErrorJSON(w, log, err)
		return
	}
	var text string
	var input bool
	if meta.Format == formatGuac {
		// Without its index a desktop recording still plays; seeking
		// then replays it from the start.
		if found, err := s.Recordings.CommitIndex(ctx, id, rel, meta.Size); err != nil || !found {
			log.WarnContext(r.Context(), "desktop recording stored without a whole key-frame index", "found", found, "err", err)
		}
	} else {
		var terr error
		text, input, terr = s.recordingText(ctx, rel)
		if terr != nil {
			// A damaged recording is still kept, as evidence; it is only not
			// searchable past the damage.
			log.WarnContext(r.Context(), "recording text extraction stopped", "err", terr)
		}
	}
	rec, err := s.Store.AddRecording(ctx, store.Recording{
		SessionID: id, User: meta.User, Resource: meta.Resource, Protocol: meta.Protocol, GatewayID: gw.ID, Gateway: gw.Name,
		ClientAddr: meta.ClientAddr, Format: meta.Format, Start: meta.Start, End: meta.End, Size: meta.Size, SHA256: sum,
		Incomplete: !meta.Complete, Input: input, Path: rel,
	}, text)
	if err != nil {
		s.serverErrorJSON(w, log, err)
		return
	}
	details := map[string]string{"session": id, "user": meta.User, "size": strconv.FormatInt(meta.Size, 10), "recording": strconv.FormatInt(rec.ID, 10)}
	if !meta.Complete {
		details["incomplete"] = "true"
	}
	if offset > 0 {
		details["resumed_at"] = strconv.FormatInt(offset, 10)
	}
	s.record(r, audit.Event{Actor: "gateway:" + gw.Name, Action: audit.ActionRecordingUpload, Target: meta.Resource,
		Outcome: audit.OutcomeSuccess, Details: details})
	log.InfoContext(r.Context(), "recording stored", "id", rec.ID, "size", meta.Size, "incomplete", !meta.Complete)
	s.Metrics.RecordingUploaded(true, meta.Size)
	writeJSON(w, http.StatusOK, wire.RecordingStatus{Size: meta.Size, Stored: true, SHA256: sum})
}

// Recording formats, and the extension each is stored with.
const (
	formatCast = "asciicast"
	formatGuac = "guac"
)

var recordingExt = map[string]string{formatCast: ".cast", formatGuac: ".guac"}

// recordingIndexUpload receives a desktop recording's key-frame index,
// which the gateway sends before the recording; it is stored with the
// recording once that is complete and checked.
func (s *Server) recordingIndexUpload(w http.ResponseWriter, r *http.Request) {
	gw, id, signedBody, ok := s.gatewaySession(w, r, "recording index upload")
	if !ok {
		return
	}
	index, err := io.ReadAll(http.MaxBytesReader(w, r.Body, storage.MaxIndex))
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, "index upload failed: "+err.Error())
		return
	}
	if sha256.Sum256(index) != signedBody {
		writeJSONError(w, http.StatusBadRequest, "the index differs from the digest the gateway signed; nothing was kept")
		return
	}
	// The recording's PUT checks the session in detail; nothing is kept
	// for a session the portal did not open through this gateway.
	gs, err := s.Store.GatewaySessionByID(r.Context(), id)
	if (err == nil && gs.GatewayID != gw.ID) || (errors.Is(err, store.ErrNotFound) && !gw.Embedded) {
		writeJSONError(w, http.StatusForbidden, fmt.Sprintf("recording refused: the portal opened no session %s through gateway %s", id, gw.Name))
		return
	} else if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.serverErrorJSON(w, s.Logger.With("gateway", gw.Name, "session", id), err)
		return
	}
	unlock, ok := s.lockUpload(w, id)
	if !ok {
		return
	}
	defer unlock()
	if rec, err := s.Store.RecordingBySession(r.Context(), id); err == nil {
		if rec.GatewayID != gw.ID {
			writeJSONError(w, http.StatusConflict, "a recording of this session was stored by another gateway")
			return
		}
		// Stored already: the recording's PUT confirms it again.
		writeJSON(w, http.StatusOK, wire.RecordingStatus{})
		return
	}
	if err := s.Recordings.PutIndex(r.Context(), id, bytes.NewReader(index)); err != nil {
		s.Logger.WarnContext(r.Context(), "recording index upload failed", "gateway", gw.Name, "session", id, "err", err)
		writeJSONError(w, http.StatusBadRequest, "index upload failed: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, wire.RecordingStatus{})
}

func checkRecordingMeta(id string, m wire.RecordingMeta) error {
	switch {
	case !storage.ValidKey(id) || m.SessionID != id:
		return errors.New("the session ID of the path and the metadata differ or are invalid")
	case m.Size < 0 || m.Size > maxRecordingUpload:
		return fmt.Errorf("size %d outside 0..%d", m.Size, maxRecordingUpload)
	case len(m.SHA256) != 64:
		return errors.New("no SHA-256")
	case m.Start.IsZero() || m.End.Before(m.Start):
		return errors.New("start and end times missing or reversed")
	case m.User == "" || m.Resource == "" || m.Protocol == "" || len(m.User) > 256 || len(m.Resource) > 256 || len(m.Protocol) > 16 || len(m.ClientAddr) > 256:
		return errors.New("user, resource or protocol missing or too long")
	}
	return nil
}

// errTextFull stops text extraction at maxSearchText.
var errTextFull = errors.New("search text limit reached")

type limitedBuffer struct{ bytes.Buffer }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > maxSearchText {
		b.Buffer.Write(p[:maxSearchText-b.Len()])
		return 0, errTextFull
	}
	return b.Buffer.Write(p)
}

// textLimits read any recording a gateway wrote, however long.
var textLimits = asciicast.Limits{MaxLine: asciicast.DefaultLimits.MaxLine, MaxEvents: math.MaxInt64}

// recordingText returns the plain text of a stored terminal recording's
// output, for search, and whether it recorded input.
func (s *Server) recordingText(ctx context.Context, rel string) (string, bool, error) {
	f, err := s.Recordings.Open(ctx, rel)
	if err != nil {
		return "", false, err
	}
	defer f.Close()
	rd, err := asciicast.NewReader(f, textLimits)
	if err != nil {
		return "", false, err
	}
	input := rd.Header().Keyway != nil && rd.Header().Keyway.Input
	var buf limitedBuffer
	err = asciicast.Text(rd, &buf)
	if errors.Is(err, errTextFull) {
		err = nil
	}
	return buf.String(), input, err
}

func (s *Server) serverErrorJSON(w http.ResponseWriter, log *slog.Logger, err error) {
	log.Error("recording upload failed", "err", err)
	writeJSONError(w, http.StatusInternalServerError, "internal error; see the portal log")
}
