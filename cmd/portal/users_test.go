package main

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyway-dev/keyway/portal/store"
)

// TestUsersAddNameRule: the command line creates only names the pages
// and single sign-on accept; before, "two words" or a control character
// became an account no page could edit.
func TestUsersAddNameRule(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"carol", true},
		{"carol@example.com", true},
		{"two words", false},
		{"tab\there", false},
		{strings.Repeat("a", 65), false},
	} {
		err := run(ctx, []string{"users", "add", "--role", "user", "--password-stdin", "--data", dir, tc.name},
			strings.NewReader("a-long-password-1\n"), io.Discard, io.Discard)
		if tc.ok && err != nil {
			t.Errorf("%q: %v", tc.name, err)
		}
		if !tc.ok && !errors.Is(err, store.ErrInvalidUserName) {
			t.Errorf("%q: got %v, want the user-name rule", tc.name, err)
		}
	}
}
