package wire

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Recording uploads: a gateway sends each finished recording of its spool
// to the portal over HTTPS, signed with its key like the config pull.
//
//	GET {portal}/gateway-api/v1/recordings/{session}
//	  → 200 RecordingStatus: how many bytes of it the portal holds
//	PUT {portal}/gateway-api/v1/recordings/{session}?offset=N
//	  X-Keyway-Recording: base64url(JSON RecordingMeta)
//	  body: the recording from byte N to its end
//	  → 200 RecordingStatus with the SHA-256 of the whole recording as
//	    stored, or 422 with the portal's differing SHA-256 (it kept
//	    nothing), or an error.
//	PUT {portal}/gateway-api/v1/recordings/{session}/index
//	  body: a desktop recording's key-frame index (recordings/guacrec),
//	  sent before each PUT of the recording; the portal keeps the last
//	  one until the recording is stored, and stores it beside it
//	  → 200 RecordingStatus (size: the index's), or an error.
const (
	// RecordingsPath is the prefix of the upload endpoints; the session ID
	// follows it.
	RecordingsPath = "/gateway-api/v1/recordings/"
	// IndexSuffix follows the session ID in the index upload's path.
	IndexSuffix = "/index"
	// HeaderRecording carries a PUT's RecordingMeta.
	HeaderRecording = "X-Keyway-Recording"
)

// maxRecordingMeta bounds the encoded metadata header.
const maxRecordingMeta = 8 << 10

// RecordingMeta describes an uploaded recording. The gateway that made it is
// the one whose signature the request carries, never a field.
type RecordingMeta struct {
	SessionID  string    `json:"session_id"`
	User       string    `json:"user"`
	Resource   string    `json:"resource"`
	Protocol   string    `json:"protocol"`
	ClientAddr string    `json:"client_addr"`
	Format     string    `json:"format"` // "asciicast" or "guac"
	Start      time.Time `json:"start"`
	End        time.Time `json:"end"`
	// Complete is false for a recording cut short by a gateway crash or a
	// write error; it still plays up to where it stops.
	Complete bool   `json:"complete"`
	Size     int64  `json:"size"`
	SHA256   string `json:"sha256"`
}

// RecordingStatus is the portal's answer about one recording.
type RecordingStatus struct {
	// Size is how many bytes the portal holds: of an interrupted upload, or
	// of the stored recording.
	Size int64 `json:"size"`
	// Stored is true once the portal has verified and stored the whole
	// recording; SHA256 is then its checksum.
	Stored bool   `json:"stored"`
	SHA256 string `json:"sha256,omitempty"`
	Error  string `json:"error,omitempty"`
}

// EncodeRecordingMeta returns m as the value of HeaderRecording.
func EncodeRecordingMeta(m RecordingMeta) (string, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return "", err
	}
	v := base64.RawURLEncoding.EncodeToString(b)
	if len(v) > maxRecordingMeta {
		return "", fmt.Errorf("recording metadata of %d bytes exceeds %d", len(v), maxRecordingMeta)
	}
	return v, nil
}

// DecodeRecordingMeta reads HeaderRecording strictly.
func DecodeRecordingMeta(v string) (RecordingMeta, error) {
	var m RecordingMeta
	if v == "" || len(v) > maxRecordingMeta {
		return m, errors.New("missing or oversized recording metadata")
	}
	b, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil {
		return m, fmt.Errorf("recording metadata: %w", err)
	}
	if err := readJSON(b, &m); err != nil {
		return m, fmt.Errorf("recording metadata: %w", err)
	}
	return m, nil
}
