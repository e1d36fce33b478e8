package ui

import (
	"fmt"
	"time"
)

// DeviceRow is one native-client device of a user.
type DeviceRow struct {
	ID         int64
	Name       string
	OS, Arch   string
	Version    string
	CreatedAt  time.Time
	LastUsedAt time.Time
	LastAddr   string
	ExpiresAt  time.Time
	// Status is "active", "expired", "revoked" or "waiting" (approved, the
	// client has not fetched its credential yet).
	Status string
	// RevokeAction is where the Revoke button posts.
	RevokeAction string
}

// ClientFile is one native client build offered for download.
type ClientFile struct {
	Name   string
	Label  string
	Size   int64
	SHA256 string
}

// NativeClientView is the Account page's "Native client" section.
type NativeClientView struct {
	// PortalURL goes into the keyway login line.
	PortalURL string
	Files     []ClientFile
	// Missing is set when no build is there: the words say how to make them.
	Missing bool
}

// DeviceRequestView is a pending device sign-in shown for approval.
type DeviceRequestView struct {
	UserCode    string
	Name        string
	OS, Arch    string
	Version     string
	Fingerprint string
	ClientAddr  string
	CreatedAt   time.Time
}

// DeviceView is the /device page: the code form, or a request to approve.
type DeviceView struct {
	Code    string
	Error   string
	Request *DeviceRequestView
}

// ClientSettingsView is the Settings page's "Native clients" form.
type ClientSettingsView struct {
	CredentialHours, StreamsPerDevice, StreamsPerUser string
	Errors                                            Errors
}

// sizeText shows a byte count in MiB with one decimal.
func sizeText(n int64) string {
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
