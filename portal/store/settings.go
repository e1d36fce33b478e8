package store

import (
	"context"
	"encoding/base64"
	"fmt"
)

// settingAD binds a sealed setting to its key, so that a sealed value
// cannot be moved to another setting.
func settingAD(key string) []byte { return []byte("setting:" + key) }

// SealSetting encrypts plaintext with the secrets key for the setting
// key, as text to store (within a JSON setting, say). "" stays "".
func (s *Store) SealSetting(key, plaintext string) (string, error) {
	if plaintext == "" {
		return "", nil
	}
	sealed, err := s.sealer.Seal([]byte(plaintext), settingAD(key))
	if err != nil {
		return "", fmt.Errorf("seal setting %s: %w", key, err)
	}
	return base64.StdEncoding.EncodeToString(sealed), nil
}

// OpenSetting decrypts what SealSetting returned for the same key.
func (s *Store) OpenSetting(key, sealed string) (string, error) {
	if sealed == "" {
		return "", nil
	}
	b, err := base64.StdEncoding.DecodeString(sealed)
	if err != nil {
		return "", fmt.Errorf("open setting %s: not base64: %w", key, err)
	}
	plain, err := s.sealer.Open(b, settingAD(key))
	if err != nil {
		return "", fmt.Errorf("open setting %s: %w", key, err)
	}
	return string(plain), nil
}

// SetSealedSetting stores value encrypted under key; "" deletes it.
func (s *Store) SetSealedSetting(ctx context.Context, key, value string) error {
	sealed, err := s.SealSetting(key, value)
	if err != nil {
		return err
	}
	return s.SetSetting(ctx, key, sealed)
}

// SealedSetting returns the value SetSealedSetting stored, or "".
func (s *Store) SealedSetting(ctx context.Context, key string) (string, error) {
	sealed, err := s.GetSetting(ctx, key)
	if err != nil {
		return "", err
	}
	return s.OpenSetting(key, sealed)
}
