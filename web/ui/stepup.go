package ui

import "time"

// DeviceStepUpView is the page where a user passes a resource's step-up
// MFA check for one of their native client devices.
type DeviceStepUpView struct {
	ID          int64
	Name        string
	System      string
	Fingerprint string
	// Within is the step-up window asked for, in minutes; MFAAt the web
	// session's last MFA check, which the device takes.
	Within int
	MFAAt  time.Time
}
