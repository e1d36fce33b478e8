package httpui

import (
	"github.com/keyway-dev/keyway/gateway/wire"
	"github.com/keyway-dev/keyway/portal/store"
)

// sessionRecording is what the gateway is asked to record of a session on
// a resource with options o: nil when recording is off.
func sessionRecording(o store.Options) *wire.Recording {
	mode := o.RecordingMode()
	if mode == store.RecordingOff {
		return nil
	}
	return &wire.Recording{Required: mode == store.RecordingRequired, Input: o.RecordInput}
}

// recordingDetail describes a resource's recording settings for the audit
// log.
func recordingDetail(o store.Options) string {
	d := o.RecordingMode()
	if o.RecordInput && d != store.RecordingOff {
		d += ", with input"
	}
	return d
}
