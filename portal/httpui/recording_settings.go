package httpui

import (
	"github.com/keyway-dev/keyway/portal/store"
)

// recordingDetail describes a resource's recording settings for the audit
// log.
func recordingDetail(o store.Options) string {
	d := o.RecordingMode()
	if o.RecordInput && d != store.RecordingOff {
		d += ", with input"
	}
	return d
}
