// Package files is the portal's side of the SFTP file browser: a pkg/sftp
// client over the raw SFTP stream a gateway relays from the target's sftp
// subsystem, with the operations the browser offers. Paths are the
// target's, used as given: nothing here cleans or joins a path a user
// sent, so a name is never turned into another file on the portal's side.
package files

import (
	"archive/zip"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pkg/sftp"
)

// Limits.
const (
	// maxName is the longest file name accepted, in bytes (Linux's
	// NAME_MAX).
	maxName = 255
	// maxPath bounds a path from the browser.
	maxPath = 4096
	// maxConcurrent is how many SFTP reads or writes of one file are in
	// flight at once, as OpenSSH's sftp client does.
	maxConcurrent = 64
	// openSSHPacket is the data per read or write request when the server
	// announces limits@openssh.com: OpenSSH (8.5 and later) takes messages
	// of 256 KiB, and its own client then moves 255 KiB per request. Other
	// servers get pkg/sftp's 32 KiB, which every server takes.
	openSSHPacket = 255 << 10
)

// Errors callers branch on.
var (
	// ErrTooLarge: an upload went past its limit; nothing was kept.
	ErrTooLarge = errors.New("the file is larger than the upload limit")
	// ErrExists: an upload or rename would replace an existing file.
	ErrExists = errors.New("a file with this name already exists")
	// ErrBadName: a name is empty, ".", "..", has a slash or a NUL, or is
	// too long.
	ErrBadName = errors.New("not a valid file name")
	// ErrBadPath: a path is not absolute, has a NUL or is too long.
	ErrBadPath = errors.New("not a valid path")
	// ErrProtected: the path is a dotfile or inside a dot folder
	// (.bashrc, .ssh/authorized_keys), which the resource keeps from being
	// changed through the browser.
	ErrProtected = errors.New("files and folders whose names start with a dot are protected on this resource")
)

// IsDotPath reports whether any element of p names a dotfile or dot
// folder (".ssh", ".bashrc"); "." and ".." are not names.
func IsDotPath(p string) bool {
	for _, el := range strings.Split(p, "/") {
		if strings.HasPrefix(el, ".") && el != "." && el != ".." {
			return true
		}
	}
	return false
}

// Protected reports whether changing p would change a dotfile: p itself
// names one, or p's folder resolves (symlinks followed, as the target
// resolves them) into a dot folder. With follow, a final symlink is
// followed too, for operations that act on what a link points to (chmod);
// others (rename, delete, an upload that replaces) act on the link itself.
func (c *Client) Protected(p string, follow bool) (bool, error) {
	if IsDotPath(p) {
		return true, nil
	}
	if follow {
		if r, err := c.Resolve(p); err == nil {
			return IsDotPath(r), nil
		}
		// It does not exist (yet): its folder decides.
	}
	dir, err := c.Resolve(path.Dir(p))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil // nothing there to protect; the operation fails on its own
		}
		return false, err
	}
	return IsDotPath(Join(dir, path.Base(p))), nil
}

// CheckName checks that name is one path element the target will take
// literally: spaces, unicode and newlines are fine.
func CheckName(name string) error {
	if name == "" || name == "." || name == ".." || len(name) > maxName || strings.ContainsAny(name, "/\x00") {
		return ErrBadName
	}
	return nil
}

// CheckPath checks a path from the browser: absolute, without NUL, of a
// sane length. It is not cleaned: ".." elements are the target's to
// resolve.
func CheckPath(p string) error {
	if !strings.HasPrefix(p, "/") || len(p) > maxPath || strings.ContainsRune(p, 0) {
		return ErrBadPath
	}
	return nil
}

// Join appends the single element name to dir.
func Join(dir, name string) string {
	if strings.HasSuffix(dir, "/") {
		return dir + name
	}
	return dir + "/" + name
}

// Client is one SFTP session on a target.
type Client struct {
	c    *sftp.Client
	conn io.Closer
}

// Open starts an SFTP client on conn, the gateway's stream; Close closes
// conn.
func Open(conn io.ReadWriteCloser) (*Client, error) {
	c, err := sftp.NewClientPipe(conn, conn,
		sftp.UseConcurrentReads(true), sftp.UseConcurrentWrites(true),
		sftp.MaxConcurrentRequestsPerFile(maxConcurrent))
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("start SFTP client: %w", err)
	}
	if _, ok := c.HasExtension("limits@openssh.com"); ok {
		// Options are functions on the client: applied now, after the
		// version exchange told what the server takes, before any transfer.
		if err := sftp.MaxPacketUnchecked(openSSHPacket)(c); err != nil {
			c.Close()
			return nil, fmt.Errorf("set the SFTP packet size: %w", err)
		}
	}
	return &Client{c: c, conn: conn}, nil
}

// Close ends the session.
func (c *Client) Close() error {
	err := c.c.Close()
	c.conn.Close()
	return err
}

// Home returns the login user's home directory (where SFTP starts).
func (c *Client) Home() (string, error) {
	p, err := c.c.Getwd()
	if err != nil {
		return "", fmt.Errorf("find the home directory: %w", err)
	}
	return p, nil
}

// Resolve returns the canonical absolute form of p, symlinks followed,
// as the target resolves it.
func (c *Client) Resolve(p string) (string, error) {
	r, err := c.c.RealPath(p)
	if err != nil {
		return "", fmt.Errorf("resolve %q: %w", p, err)
	}
	return r, nil
}

// Entry is a file in a listing.
type Entry struct {
	Name    string
	Path    string
	Size    int64
	Mode    fs.FileMode
	ModTime time.Time
	UID     uint32
	GID     uint32
	// IsDir is true for folders and for symlinks to folders.
	IsDir bool
	// Link is a symlink's target, "" for other files; Broken marks a
	// symlink whose target cannot be read.
	Link   string
	Broken bool
}

func entryOf(p string, fi fs.FileInfo) Entry {
	e := Entry{Name: fi.Name(), Path: p, Size: fi.Size(), Mode: fi.Mode(), ModTime: fi.ModTime(), IsDir: fi.IsDir()}
	if st, ok := fi.Sys().(*sftp.FileStat); ok {
		e.UID, e.GID = st.UID, st.GID
	}
	return e
}

// Stat describes p, following symlinks.
func (c *Client) Stat(p string) (Entry, error) {
	fi, err := c.c.Stat(p)
	if err != nil {
		return Entry{}, fmt.Errorf("stat %q: %w", p, err)
	}
	e := entryOf(p, fi)
	e.Name = path.Base(p)
	return e, nil
}

// List returns the entries of dir (without "." and ".."), folders first,
// each group by name. Symlinks are followed to tell folders from files.
func (c *Client) List(dir string) ([]Entry, error) {
	fis, err := c.c.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list %q: %w", dir, err)
	}
	out := make([]Entry, 0, len(fis))
	for _, fi := range fis {
		e := entryOf(Join(dir, fi.Name()), fi)
		if fi.Mode()&fs.ModeSymlink != 0 {
			e.Link, _ = c.c.ReadLink(e.Path)
			if target, err := c.c.Stat(e.Path); err == nil {
				e.IsDir = target.IsDir()
			} else {
				e.Broken = true
			}
		}
		out = append(out, e)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].IsDir != out[j].IsDir {
			return out[i].IsDir
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// OpenFile opens the regular file p for reading; the caller closes it.
// WriteTo on it reads with concurrent requests.
func (c *Client) OpenFile(p string) (*sftp.File, Entry, error) {
	e, err := c.Stat(p)
	if err != nil {
		return nil, e, err
	}
	if !e.Mode.IsRegular() {
		return nil, e, fmt.Errorf("open %q: not a regular file", p)
	}
	f, err := c.c.Open(p)
	if err != nil {
		return nil, e, fmt.Errorf("open %q: %w", p, err)
	}
	return f, e, nil
}

// Mkdir creates the folder name in dir.
func (c *Client) Mkdir(dir, name string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	if err := c.c.Mkdir(Join(dir, name)); err != nil {
		return fmt.Errorf("create folder %q: %w", Join(dir, name), err)
	}
	return nil
}

// Rename gives p the new name newName in the same folder; an existing file
// of that name is not replaced.
func (c *Client) Rename(p, newName string) (string, error) {
	if err := CheckName(newName); err != nil {
		return "", err
	}
	to := Join(path.Dir(p), newName)
	if _, err := c.c.Lstat(to); err == nil {
		return "", ErrExists
	}
	if err := c.c.Rename(p, to); err != nil {
		return "", fmt.Errorf("rename %q: %w", p, err)
	}
	return to, nil
}

// Remove deletes p: a file, a symlink (not its target), or a folder with
// everything in it.
func (c *Client) Remove(p string) error {
	if err := c.c.RemoveAll(p); err != nil {
		return fmt.Errorf("delete %q: %w", p, err)
	}
	return nil
}

// Chmod sets p's permission bits.
func (c *Client) Chmod(p string, mode fs.FileMode) error {
	if err := c.c.Chmod(p, mode&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
		return fmt.Errorf("change permissions of %q: %w", p, err)
	}
	return nil
}

// ParseMode reads permissions written in octal, such as 644 or 0755.
func ParseMode(s string) (fs.FileMode, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 8, 32)
	if err != nil || n > 0o7777 {
		return 0, fmt.Errorf("permissions %q: write them in octal, such as 644 or 755", s)
	}
	m := fs.FileMode(n & 0o777)
	if n&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if n&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if n&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m, nil
}

// Upload stores what r yields as dir/name. The bytes go to a hidden
// temporary file first, renamed to name only once complete, so an
// interrupted upload never leaves a partial file under the final name; the
// temporary file is removed on failure. limit (0: none) bounds the size:
// more is cut off with ErrTooLarge. replace allows replacing an existing
// file. It returns the bytes stored.
func (c *Client) Upload(dir, name string, r io.Reader, limit int64, replace bool) (int64, error) {
	if err := CheckName(name); err != nil {
		return 0, err
	}
	final := Join(dir, name)
	if !replace {
		if _, err := c.c.Lstat(final); err == nil {
			return 0, ErrExists
		}
	}
	tmp := Join(dir, ".keyway-upload-"+rand.Text()[:16])
	f, err := c.c.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return 0, fmt.Errorf("create %q: %w", final, err)
	}
	src := r
	if limit > 0 {
		src = &limitReader{r: r, left: limit}
	}
	n, err := f.ReadFromWithConcurrency(src, maxConcurrent)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("finish %q: %w", final, cerr)
	}
	if err == nil {
		err = c.rename(tmp, final, replace)
	}
	if err != nil {
		// Best effort: the session may be gone with the browser.
		c.c.Remove(tmp)
		return n, err
	}
	return n, nil
}

// rename moves a finished upload to its name.
func (c *Client) rename(tmp, final string, replace bool) error {
	if !replace {
		// SFTP's rename refuses to replace a file, so a file created
		// meanwhile is not lost.
		if err := c.c.Rename(tmp, final); err != nil {
			if _, serr := c.c.Lstat(final); serr == nil {
				return ErrExists
			}
			return fmt.Errorf("rename the upload to %q: %w", final, err)
		}
		return nil
	}
	if _, ok := c.c.HasExtension("posix-rename@openssh.com"); ok {
		if err := c.c.PosixRename(tmp, final); err != nil {
			return fmt.Errorf("rename the upload to %q: %w", final, err)
		}
		return nil
	}
	c.c.Remove(final)
	if err := c.c.Rename(tmp, final); err != nil {
		return fmt.Errorf("rename the upload to %q: %w", final, err)
	}
	return nil
}

// limitReader fails with ErrTooLarge once more than its limit was read.
type limitReader struct {
	r    io.Reader
	left int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.left < 0 {
		return 0, ErrTooLarge
	}
	// Read one byte past the limit to tell "exactly the limit" from more.
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if l.left < 0 {
		return n, ErrTooLarge
	}
	return n, err
}

// ZipStats says what a folder download held.
type ZipStats struct {
	Files   int
	Bytes   int64
	Skipped int // unreadable files and folders, left out
}

// Zip writes the folder dir, with everything below it, to w as a zip
// archive, streamed file by file. Symlinks are not followed (no loops);
// files that cannot be read are left out and counted. It stops when ctx
// ends.
func (c *Client) Zip(ctx context.Context, dir string, w io.Writer) (ZipStats, error) {
	var st ZipStats
	zw := zip.NewWriter(w)
	walker := c.c.Walk(dir)
	for walker.Step() {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		p := walker.Path()
		if err := walker.Err(); err != nil {
			st.Skipped++
			continue
		}
		rel := ZipName(strings.TrimPrefix(strings.TrimPrefix(p, dir), "/"))
		if rel == "" {
			continue
		}
		fi := walker.Stat()
		switch {
		case fi.IsDir():
			if _, err := zw.CreateHeader(&zip.FileHeader{Name: rel + "/", Modified: fi.ModTime()}); err != nil {
				return st, err
			}
		case fi.Mode().IsRegular():
			f, err := c.c.Open(p)
			if err != nil {
				st.Skipped++
				continue
			}
			hdr := &zip.FileHeader{Name: rel, Method: zip.Deflate, Modified: fi.ModTime()}
			hdr.SetMode(fi.Mode())
			zf, err := zw.CreateHeader(hdr)
			if err != nil {
				f.Close()
				return st, err
			}
			n, err := f.WriteTo(zf)
			f.Close()
			st.Files++
			st.Bytes += n
			if err != nil {
				return st, fmt.Errorf("add %q to the zip: %w", p, err)
			}
		}
	}
	return st, zw.Close()
}

// Message is what the target said when it refused an operation, in its
// own words where it gave some (e.g. "Permission denied").
func Message(err error) string {
	for _, e := range []error{ErrTooLarge, ErrExists, ErrBadName, ErrBadPath, ErrProtected} {
		if errors.Is(err, e) {
			return e.Error()
		}
	}
	var se *sftp.StatusError
	var pe *fs.PathError
	switch {
	case errors.As(err, &se):
		// Error() is `sftp: "<the server's message>" (SSH_FX_…)`.
		s := strings.TrimPrefix(se.Error(), "sftp: ")
		if i := strings.LastIndex(s, " ("); i > 0 {
			if msg, uerr := strconv.Unquote(s[:i]); uerr == nil && msg != "" {
				return msg
			}
		}
		return s
	// pkg/sftp turns these two status codes into the os errors.
	case errors.Is(err, fs.ErrPermission):
		return "Permission denied"
	case errors.Is(err, fs.ErrNotExist):
		return "No such file or directory"
	case errors.As(err, &pe):
		return pe.Err.Error()
	}
	return err.Error()
}

// ZipName is a relative path as a zip entry name: a backslash, which zip
// tools on Windows take for a folder separator (and so a way out of the
// folder being extracted), becomes "_".
func ZipName(rel string) string {
	return strings.ReplaceAll(rel, `\`, "_")
}
