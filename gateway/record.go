package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/keyway-dev/keyway/gateway/display"
	"github.com/keyway-dev/keyway/gateway/spool"
	"github.com/keyway-dev/keyway/gateway/wire"
	"github.com/keyway-dev/keyway/recordings/asciicast"
	"github.com/keyway-dev/keyway/recordings/guacrec"
)

// errNoSpool is why a session is not recorded on a gateway without a spool.
var errNoSpool = errors.New("this gateway has no recording spool")

// errTCPUnrecordable is why a tcp session is never recorded: the gateway
// passes its bytes on without understanding them.
var errTCPUnrecordable = errors.New("raw TCP tunnels cannot be recorded")

// checkRecording is asked before the target is dialed: a session that must
// be recorded is refused at once when the spool cannot take it, so the
// target is not even contacted. It returns the refusal, or nil.
func (g *Gateway) checkRecording(req *wire.Request, log *slog.Logger) *wire.Response {
	if req.Recording == nil || !req.Recording.Required {
		return nil
	}
	err := errNoSpool
	if g.cfg.Spool != nil {
		err = g.cfg.Spool.CheckSpace()
	}
	switch {
	case req.Protocol == wire.ProtocolTCP:
		err = errTCPUnrecordable
	case !recordable(req.Protocol):
		err = fmt.Errorf("this gateway cannot record %s sessions yet", req.Protocol)
	}
	if err == nil {
		return nil
	}
	log.Error("session refused: it must be recorded and cannot be", "err", err)
	return recordingRefusal(req, err)
}

// recordable reports the protocols whose sessions a gateway records: SSH
// terminals as asciicast, VNC and RDP desktops as Guacamole recordings.
func recordable(protocol string) bool {
	return protocol == wire.ProtocolSSH || protocol == wire.ProtocolVNC || protocol == wire.ProtocolRDP
}

// recordingRefusal tells the user, in words that reveal nothing of the
// gateway's disks, why a session that must be recorded cannot start; the
// gateway's log has the detail.
func recordingRefusal(req *wire.Request, err error) *wire.Response {
	if errors.Is(err, errTCPUnrecordable) {
		return &wire.Response{Code: wire.CodeRecordingUnavailable,
			Message: fmt.Sprintf("sessions on %s must be recorded, and raw TCP tunnels cannot be recorded: the gateway passes their bytes on without understanding them. Use a terminal or desktop session, or ask an administrator to change the resource's recording setting", req.Resource)}
	}
	why := "its recording spool failed"
	switch {
	case errors.Is(err, spool.ErrLowSpace):
		why = "its disk for recordings is nearly full"
	case errors.Is(err, errNoSpool):
		why = "it has no recording spool"
	case !recordable(req.Protocol):
		why = fmt.Sprintf("it cannot record %s sessions yet", req.Protocol)
	}
	return &wire.Response{Code: wire.CodeRecordingUnavailable,
		Message: fmt.Sprintf("sessions on %s must be recorded, and the gateway cannot record this one now: %s. Ask an administrator to free space on the gateway or to change the resource's recording setting", req.Resource, why)}
}

// terminalRecording records one terminal session into the spool as
// asciicast v2. It implements sshgw.Recorder.
type terminalRecording struct {
	rec      *spool.Recording
	w        *asciicast.Writer
	required bool
	log      *slog.Logger

	once sync.Once // logs the first failure of an optional recording
}

// startSpoolRecording creates the spool recording of a session whose
// target connection and login succeeded. It returns nil, and no error,
// for a session not to be recorded; an error means a required recording
// could not start, and the session must be refused.
func (g *Gateway) startSpoolRecording(req *wire.Request, format spool.Format, log *slog.Logger) (*spool.Recording, error) {
	if req.Recording == nil {
		return nil, nil
	}
	fail := func(err error) (*spool.Recording, error) {
		if req.Recording.Required {
			return nil, err
		}
		log.Warn("session not recorded: the recording could not start", "err", err)
		return nil, nil
	}
	sp := g.cfg.Spool
	if sp == nil {
		return fail(errNoSpool)
	}
	if err := sp.CheckSpace(); err != nil {
		return fail(err)
	}
	rec, err := sp.Create(spool.Meta{
		SessionID: req.SessionID, User: req.User, Resource: req.Resource, Protocol: req.Protocol,
		Gateway: g.name(), ClientAddr: req.ClientAddr, Format: format,
	})
	if err != nil {
		return fail(err)
	}
	return rec, nil
}

// startTerminalRecording starts the recording of a terminal session whose
// target connection and login succeeded. It returns nil, and no error, for
// a session not to be recorded; an error means a required recording could
// not start, and the session must be refused.
func (g *Gateway) startTerminalRecording(req *wire.Request, log *slog.Logger) (*terminalRecording, error) {
	rec, err := g.startSpoolRecording(req, spool.Asciicast, log)
	if rec == nil {
		return nil, err
	}
	required := req.Recording.Required
	w, err := asciicast.NewWriter(rec, asciicast.Config{
		Header: asciicast.Header{
			Width: req.Terminal.Cols, Height: req.Terminal.Rows,
			Title: req.User + " on " + req.Resource,
			Env:   map[string]string{"TERM": req.Terminal.Term},
			Keyway: &asciicast.Meta{SessionID: req.SessionID, User: req.User, Resource: req.Resource,
				Gateway: g.name()},
		},
		Input: req.Recording.Input,
	})
	if err != nil {
		// Only a failing disk gets here (the size was validated with the
		// request): the recording is finished, as incomplete, to be
		// looked at rather than left open.
		rec.Finish()
		if required {
			return nil, err
		}
		log.Warn("session not recorded: the recording could not start", "err", err)
		return nil, nil
	}
	log.Info("recording the session", "input", req.Recording.Input, "required", required)
	return &terminalRecording{rec: rec, w: w, required: required, log: log}, nil
}

// name is how the gateway names itself in recordings.
func (g *Gateway) name() string {
	if g.cfg.Name != "" {
		return g.cfg.Name
	}
	return g.cfg.ID
}

// check passes a recording error on when the recording is required; an
// optional recording that fails is logged once and the session goes on.
func (r *terminalRecording) check(err error) error {
	if err == nil || r.required {
		return err
	}
	r.once.Do(func() { r.log.Error("recording failed; the session goes on unrecorded", "err", err) })
	return nil
}

func (r *terminalRecording) Output(p []byte) error { return r.check(r.w.Output(p)) }
func (r *terminalRecording) Input(p []byte) error  { return r.check(r.w.Input(p)) }
func (r *terminalRecording) Resize(cols, rows int) error {
	return r.check(r.w.Resize(cols, rows))
}

// finish ends the recording; the spool's uploader sends it to the portal.
func (r *terminalRecording) finish() {
	err := r.w.Close()
	m, ferr := r.rec.Finish()
	if err = errors.Join(err, ferr); err != nil {
		r.log.Error("recording finished with an error; it is kept as incomplete", "err", err, "size", m.Size)
		return
	}
	r.log.Info("recording finished", "size", m.Size, "sha256", m.SHA256)
}

// desktopRecording records one desktop session into the spool as a
// Guacamole recording with its key-frame index. It implements
// display.Recorder.
type desktopRecording struct {
	rec      *spool.Recording
	w        *guacrec.Writer
	required bool
	log      *slog.Logger
	interval time.Duration // between key frames

	once sync.Once // logs the first failure of an optional recording
}

// startDesktopRecording starts the recording of a desktop session whose
// target accepted the sign-in; like startTerminalRecording, nil and no
// error for a session not to be recorded.
func (g *Gateway) startDesktopRecording(req *wire.Request, log *slog.Logger) (*desktopRecording, error) {
	rec, err := g.startSpoolRecording(req, spool.Guacamole, log)
	if rec == nil {
		return nil, err
	}
	w, err := guacrec.NewWriter(rec, rec.Index())
	if err != nil {
		rec.Finish()
		if req.Recording.Required {
			return nil, err
		}
		log.Warn("session not recorded: the recording could not start", "err", err)
		return nil, nil
	}
	log.Info("recording the session", "required", req.Recording.Required)
	return &desktopRecording{rec: rec, w: w, required: req.Recording.Required, log: log, interval: g.cfg.KeyFrameInterval}, nil
}

// display returns the display pipeline's side of the recording; nil for
// a session not recorded.
func (r *desktopRecording) display(opts wire.Desktop) *display.Recording {
	if r == nil {
		return nil
	}
	return display.NewRecording(r, r.interval, opts.IndexedImages, nil)
}

func (r *desktopRecording) check(err error) error {
	if err == nil || r.required {
		return err
	}
	r.once.Do(func() { r.log.Error("recording failed; the session goes on unrecorded", "err", err) })
	return nil
}

func (r *desktopRecording) Write(p []byte) (int, error) {
	n, err := r.w.Write(p)
	if err = r.check(err); err == nil {
		n = len(p)
	}
	return n, err
}

func (r *desktopRecording) KeyFrame() error { return r.check(r.w.KeyFrame()) }

// finish ends the recording; the spool's uploader sends it to the portal.
func (r *desktopRecording) finish() {
	if r == nil {
		return
	}
	m, err := r.rec.Finish()
	if err != nil {
		r.log.Error("recording finished with an error; it is kept as incomplete", "err", err, "size", m.Size)
		return
	}
	r.log.Info("recording finished", "size", m.Size, "sha256", m.SHA256)
}
