//go:build !(linux || darwin || freebsd)

package spool

import "errors"

// freeBytes is not implemented here: CheckSpace fails, so that sessions
// that must be recorded are refused rather than risk a full disk.
func freeBytes(string) (uint64, error) { return 0, errors.ErrUnsupported }
