// Package storage keeps the portal's recording files in a directory:
// uploads arrive in pieces (a gateway resumes where an interrupted upload
// stopped), are checked against the SHA-256 the gateway computed, and only
// then become a recording, written under a temporary name, synced and
// renamed so that a crash never leaves half a file under a final name.
//
// Layout under the root directory:
//
//	incoming/SESSION.part         an upload in progress
//	incoming/SESSION.idx          its key-frame index (desktop recordings)
//	YYYY/MM/DD/SESSION.cast       a stored terminal recording (by start date, UTC)
//	YYYY/MM/DD/SESSION.guac       a stored desktop recording, with
//	YYYY/MM/DD/SESSION.idx        its key-frame index (recordings/guacrec)
//
// Store is what the portal needs of recording storage; Dir is the
// directory implementation, and portal/objstore keeps recordings in
// S3-compatible object storage behind the same calls.
package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/keyway-dev/keyway/recordings/guacrec"
)

// Errors callers branch on.
var (
	// ErrChecksum means the bytes received do not have the checksum the
	// uploader announced; the upload was discarded.
	ErrChecksum = errors.New("storage: checksum mismatch")
	// ErrBusy means another upload of the same recording is running.
	ErrBusy = errors.New("storage: upload already in progress")
	// ErrOffset means an upload did not continue where the stored part
	// ends.
	ErrOffset = errors.New("storage: upload offset does not match")
	// ErrSize means the upload holds more or fewer bytes than announced.
	ErrSize = errors.New("storage: size mismatch")
)

// Store keeps recordings: uploads received in resumable pieces, checked
// and committed, then read (with seeks), indexed and removed. Methods
// taking a key need the caller to hold its Lock where they say so.
type Store interface {
	// Lock claims key for one upload; a key already claimed gives ErrBusy.
	Lock(key string) (unlock func(), err error)
	// PartSize returns how many bytes of an interrupted upload of key are
	// held, 0 for none.
	PartSize(ctx context.Context, key string) (int64, error)
	// Append writes r to key's upload, to be stored at rel (from Path),
	// from offset on, at most limit bytes in all, and returns the bytes
	// held afterwards. What arrived is kept even when r fails.
	Append(ctx context.Context, key, rel string, offset int64, r io.Reader, limit int64) (int64, error)
	// Discard removes key's upload and its index.
	Discard(ctx context.Context, key string) error
	// Commit checks key's upload against size and SHA-256 and stores it at
	// rel; a mismatch discards it (ErrSize, ErrChecksum). It returns the
	// SHA-256 of what was received.
	Commit(ctx context.Context, key, rel string, size int64, wantSHA string) (string, error)
	// Open opens the recording at rel for reading.
	Open(ctx context.Context, rel string) (File, error)
	// Remove deletes the recording at rel and its index; one already gone
	// is not an error.
	Remove(ctx context.Context, rel string) error
	// PutIndex keeps the key-frame index of key's upload.
	PutIndex(ctx context.Context, key string, r io.Reader) error
	// CommitIndex stores the index that came with key's upload beside the
	// recording at rel (size bytes long) and reports whether there was one.
	CommitIndex(ctx context.Context, key, rel string, size int64) (bool, error)
	// Index returns the key-frame index of the recording at rel; nil for
	// none.
	Index(ctx context.Context, rel string) (guacrec.Index, error)
	// Writable checks that recordings can be stored now.
	Writable(ctx context.Context) error
}

// File is a stored recording opened for reading: players seek in it, and
// desktop recordings are read from their key frames.
type File interface {
	io.Reader
	io.ReaderAt
	io.Seeker
	io.Closer
}

// Locks are per-key upload locks within one process.
type Locks struct {
	mu   sync.Mutex
	busy map[string]bool
}

// Lock claims key; unlock releases it. A key already claimed gives
// ErrBusy, an invalid one an error.
func (l *Locks) Lock(key string) (unlock func(), err error) {
	if !ValidKey(key) {
		return nil, fmt.Errorf("storage: invalid recording key %q", key)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.busy[key] {
		return nil, ErrBusy
	}
	if l.busy == nil {
		l.busy = map[string]bool{}
	}
	l.busy[key] = true
	return func() {
		l.mu.Lock()
		delete(l.busy, key)
		l.mu.Unlock()
	}, nil
}

// CheckPath refuses a recording path (from Path) that is empty, absolute,
// leaves the store or names an upload in progress.
func CheckPath(rel string) error {
	if rel == "" || filepath.IsAbs(rel) || !filepath.IsLocal(rel) || strings.HasPrefix(filepath.Clean(rel), Incoming+string(filepath.Separator)) {
		return fmt.Errorf("storage: invalid recording path %q", rel)
	}
	return nil
}

// IndexPath is the path of the key-frame index of the recording at rel.
func IndexPath(rel string) string { return strings.TrimSuffix(rel, filepath.Ext(rel)) + IndexExt }

// maxKey bounds recording keys, which name files.
const maxKey = 128

// ValidKey accepts keys safe as file names: letters, digits, '-' and '_'.
func ValidKey(k string) bool {
	if k == "" || len(k) > maxKey {
		return false
	}
	for _, c := range []byte(k) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Dir is a recordings directory.
type Dir struct {
	root string
	Locks
}

var _ Store = (*Dir)(nil)

// Incoming is where uploads in progress are kept, under a store's root.
const Incoming = "incoming"

// Open opens (creating if needed) the recordings directory root.
func Open(root string) (*Dir, error) {
	if err := os.MkdirAll(filepath.Join(root, Incoming), 0o700); err != nil {
		return nil, fmt.Errorf("storage: create %s: %w", root, err)
	}
	return &Dir{root: root}, nil
}

// Root returns the directory's path.
func (d *Dir) Root() string { return d.root }

func (d *Dir) partPath(key string) string { return filepath.Join(d.root, Incoming, key+".part") }

// PartSize returns how many bytes of an interrupted upload of key are
// held, 0 for none.
func (d *Dir) PartSize(_ context.Context, key string) (int64, error) {
	if !ValidKey(key) {
		return 0, fmt.Errorf("storage: invalid recording key %q", key)
	}
	info, err := os.Stat(d.partPath(key))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("storage: %w", err)
	}
	return info.Size(), nil
}

// Append writes r to key's upload from offset on, which must be at most the
// bytes held (a resumed upload may overlap them); at most limit bytes in
// all are accepted. It returns the upload's size afterwards. The caller
// holds key's Lock.
func (d *Dir) Append(ctx context.Context, key, _ string, offset int64, r io.Reader, limit int64) (int64, error) {
	have, err := d.PartSize(ctx, key)
	if err != nil {
		return 0, err
	}
	if offset < 0 || offset > have {
		return have, fmt.Errorf("%w: upload from byte %d, %d held", ErrOffset, offset, have)
	}
	f, err := os.OpenFile(d.partPath(key), os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return have, fmt.Errorf("storage: %w", err)
	}
	defer f.Close()
	if err := f.Truncate(offset); err != nil {
		return have, fmt.Errorf("storage: %w", err)
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return have, fmt.Errorf("storage: %w", err)
	}
	n, err := io.Copy(f, io.LimitReader(r, limit-offset+1))
	size := offset + n
	if err == nil && size > limit {
		err = fmt.Errorf("%w: over the limit of %d bytes", ErrSize, limit)
	}
	// What arrived is kept, even when the connection broke: the next
	// attempt resumes after it.
	if serr := f.Sync(); err == nil && serr != nil {
		err = fmt.Errorf("storage: %w", serr)
	}
	return size, err
}

// Discard removes key's upload.
func (d *Dir) Discard(_ context.Context, key string) error {
	os.Remove(d.partIndexPath(key))
	err := os.Remove(d.partPath(key))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// Path returns the relative path a recording of key that started at start
// is stored at, with ext (".cast").
func Path(key string, start time.Time, ext string) string {
	return filepath.Join(start.UTC().Format("2006/01/02"), key+ext)
}

// Commit checks key's upload against size and the SHA-256 wantSHA (hex)
// and moves it to rel (from Path). A mismatch discards the upload and
// returns ErrChecksum or ErrSize with the checksum of what was received.
// The caller holds key's Lock.
func (d *Dir) Commit(ctx context.Context, key, rel string, size int64, wantSHA string) (string, error) {
	part := d.partPath(key)
	f, err := os.Open(part)
	if err != nil {
		return "", fmt.Errorf("storage: %w", err)
	}
	h := sha256.New()
	n, err := io.Copy(h, f)
	f.Close()
	if err != nil {
		return "", fmt.Errorf("storage: read %s: %w", part, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if n != size {
		d.Discard(ctx, key)
		return sum, fmt.Errorf("%w: received %d bytes, announced %d", ErrSize, n, size)
	}
	if !strings.EqualFold(sum, wantSHA) {
		d.Discard(ctx, key)
		return sum, fmt.Errorf("%w: received %s, announced %s", ErrChecksum, sum, wantSHA)
	}
	dst, err := d.abs(rel)
	if err != nil {
		return sum, err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return sum, fmt.Errorf("storage: %w", err)
	}
	// The part was synced as it arrived; the rename makes it a recording,
	// and syncing both directories makes the rename durable.
	if err := os.Rename(part, dst); err != nil {
		return sum, fmt.Errorf("storage: %w", err)
	}
	if err := errors.Join(syncDir(filepath.Dir(dst)), syncDir(filepath.Dir(part))); err != nil {
		return sum, fmt.Errorf("storage: %w", err)
	}
	return sum, nil
}

// Open opens the stored recording at rel.
func (d *Dir) Open(_ context.Context, rel string) (File, error) {
	p, err := d.abs(rel)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err // as it was: callers test for fs.ErrNotExist
	}
	return f, nil
}

// abs resolves rel inside the root, refusing paths that leave it.
func (d *Dir) abs(rel string) (string, error) {
	if err := CheckPath(rel); err != nil {
		return "", err
	}
	return filepath.Join(d.root, rel), nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// Remove deletes the stored recording at rel, and its index; one already
// gone is not an error.
func (d *Dir) Remove(_ context.Context, rel string) error {
	p, err := d.abs(rel)
	if err != nil {
		return err
	}
	for _, f := range []string{p, indexOf(p)} {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("storage: %w", err)
		}
	}
	return nil
}

// indexOf is the path of a recording's key-frame index.
func indexOf(path string) string { return IndexPath(path) }

// IndexExt names key-frame indexes.
const IndexExt = ".idx"

func (d *Dir) partIndexPath(key string) string {
	return filepath.Join(d.root, Incoming, key+IndexExt)
}

// MaxIndex bounds a key-frame index: a key frame every few seconds for
// weeks (the gateway's spool has the same bound).
const MaxIndex = 32 << 20

// PutIndex keeps the key-frame index of key's upload, replacing one sent
// before; it becomes the recording's at CommitIndex. The caller holds
// key's Lock.
func (d *Dir) PutIndex(_ context.Context, key string, r io.Reader) error {
	if !ValidKey(key) {
		return fmt.Errorf("storage: invalid recording key %q", key)
	}
	b, err := io.ReadAll(io.LimitReader(r, MaxIndex+1))
	if err != nil {
		return fmt.Errorf("storage: read index: %w", err)
	}
	if len(b) > MaxIndex {
		return fmt.Errorf("%w: index over %d bytes", ErrSize, MaxIndex)
	}
	return writeAtomic(d.partIndexPath(key), b)
}

// writeAtomic writes b to path under a temporary name, syncs and renames
// it.
func writeAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	f, err := os.Open(tmp)
	if err == nil {
		err = f.Sync()
		f.Close()
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("storage: %w", err)
	}
	return nil
}

// CommitIndex stores the index that came with key's upload beside the
// recording at rel, which is size bytes long: checked, and cut to the key
// frames inside the recording. It reports whether there was one; a
// damaged index keeps the key frames before the damage and returns the
// damage as an error too. The caller holds key's Lock.
func (d *Dir) CommitIndex(_ context.Context, key, rel string, size int64) (bool, error) {
	part := d.partIndexPath(key)
	f, err := os.Open(part)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("storage: %w", err)
	}
	ix, rerr := guacrec.ReadIndex(io.LimitReader(f, MaxIndex))
	f.Close()
	dst, err := d.abs(rel)
	if err != nil {
		return false, err
	}
	var buf bytes.Buffer
	guacrec.WriteIndex(&buf, ix.Within(size))
	if err := writeAtomic(indexOf(dst), buf.Bytes()); err != nil {
		return false, err
	}
	os.Remove(part)
	if rerr != nil {
		return true, fmt.Errorf("storage: index of %s: %w", key, rerr)
	}
	return true, nil
}

// Index returns the key-frame index of the desktop recording at rel; a
// recording without one has none.
func (d *Dir) Index(_ context.Context, rel string) (guacrec.Index, error) {
	p, err := d.abs(rel)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(indexOf(p))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	defer f.Close()
	ix, err := guacrec.ReadIndex(f)
	if err != nil {
		return ix, fmt.Errorf("storage: index of %s: %w", rel, err)
	}
	return ix, nil
}

// Writable checks that recordings can be stored: it creates, syncs and
// removes a small file where uploads are received.
func (d *Dir) Writable(context.Context) error {
	f, err := os.CreateTemp(filepath.Join(d.root, Incoming), ".writable-*")
	if err != nil {
		return fmt.Errorf("storage: write to %s: %w", d.root, err)
	}
	name := f.Name()
	_, werr := f.WriteString("ok")
	if werr == nil {
		werr = f.Sync()
	}
	cerr := f.Close()
	rerr := os.Remove(name)
	if err := errors.Join(werr, cerr, rerr); err != nil {
		return fmt.Errorf("storage: write to %s: %w", d.root, err)
	}
	return nil
}
