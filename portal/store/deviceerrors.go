package store

import "errors"

// Errors of a device that may no longer be used. The devices branch
// declares the same two in devices.go: at merge, delete this file.
var (
	ErrDeviceRevoked = errors.New("the device was revoked")
	ErrDeviceExpired = errors.New("the device's credential has expired")
)
