// Package config keeps the keyway client's settings and device key in its
// configuration directory: config.json and device.key, both 0600, in a
// directory that is 0700, because together they are a sign-in.
package config

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"
)

// File names inside the directory.
const (
	configFile = "config.json"
	keyFile    = "device.key"
)

// maxConfigSize bounds what Load reads: the file is small, and a huge one
// is not ours.
const maxConfigSize = 64 << 10

// Credential is a bearer credential; it never shows itself in logs.
type Credential string

// LogValue keeps the credential out of logs.
func (Credential) LogValue() slog.Value { return slog.StringValue("REDACTED") }

// Config is what config.json holds.
type Config struct {
	URL        string     `json:"url"`
	CA         string     `json:"ca,omitempty"`
	DeviceID   int64      `json:"device_id,omitempty"`
	DeviceName string     `json:"device_name,omitempty"`
	Credential Credential `json:"credential,omitempty"`
	ExpiresAt  time.Time  `json:"expires_at,omitzero"`
}

// Dir is $KEYWAY_CONFIG_DIR, else the user's configuration directory's
// keyway folder.
func Dir(getenv func(string) string) (string, error) {
	if d := getenv("KEYWAY_CONFIG_DIR"); d != "" {
		return d, nil
	}
	base, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("find the configuration directory (set KEYWAY_CONFIG_DIR): %w", err)
	}
	return filepath.Join(base, "keyway"), nil
}

// Load reads config.json; a missing file is an empty Config.
func Load(dir string) (Config, error) {
	var c Config
	b, err := readSmall(filepath.Join(dir, configFile))
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return Config{}, fmt.Errorf("read %s: %w", filepath.Join(dir, configFile), err)
	}
	return c, nil
}

// Save writes config.json (0600) in dir (0700), replacing it atomically.
func Save(dir string, c Config) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("encode the configuration: %w", err)
	}
	return writePrivate(dir, configFile, append(b, '\n'))
}

// NewKey makes a device key.
func NewKey() (ed25519.PrivateKey, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("make a device key: %w", err)
	}
	return key, nil
}

// SaveKey stores key as device.key, PKCS#8 PEM, 0600.
func SaveKey(dir string, key ed25519.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode the device key: %w", err)
	}
	return writePrivate(dir, keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// Key reads device.key.
func Key(dir string) (ed25519.PrivateKey, error) {
	path := filepath.Join(dir, keyFile)
	b, err := readSmall(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s is not a PEM private key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s is not an Ed25519 key", path)
	}
	return key, nil
}

// RemoveKey deletes device.key; a missing one is fine.
func RemoveKey(dir string) error {
	if err := os.Remove(filepath.Join(dir, keyFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove the device key: %w", err)
	}
	return nil
}

func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > maxConfigSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxConfigSize)
	}
	return b, nil
}

// writePrivate writes name in dir through a temporary file, so a crash
// never leaves half a file, with modes 0700 for dir and 0600 for name.
func writePrivate(dir, name string, b []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("make %s: %w", dir, err)
	}
	// MkdirAll keeps an existing directory's mode; ours holds a sign-in.
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("restrict %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, name+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	defer os.Remove(tmp.Name())
	// CreateTemp makes the file 0600 already.
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}
