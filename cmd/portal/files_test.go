package main

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyway-dev/keyway/e2e/targets"
	"github.com/keyway-dev/keyway/portal/store"
)

// filesFixture is a portal with a real sshd (internal-sftp) as a resource,
// alice with a files grant, bob with a terminal grant only, and a fresh
// folder in the test user's home for alice to work in.
type filesFixture struct {
	p     *portal
	res   store.Resource
	alice *browser
	bob   *browser
	// dir is the work folder's path on the target, also readable here:
	// the tests and sshd share the machine.
	dir string
}

func newFilesFixture(t *testing.T) *filesFixture {
	t.Helper()
	return newFilesFixtureOn(t, targets.NewSSHD(t))
}

func newFilesFixtureOn(t *testing.T, sshd *targets.SSHD) *filesFixture {
	t.Helper()
	ctx := context.Background()
	p, _ := startPortal(t, t.TempDir())
	st := p.Store
	alice, err := st.CreateUser(ctx, store.User{Name: "alice", Role: store.RoleUser}, mustHash(t, "alice-password-1"))
	if err != nil {
		t.Fatal(err)
	}
	bob, _ := st.CreateUser(ctx, store.User{Name: "bob", Role: store.RoleUser}, mustHash(t, "bob-password-12"))
	res, _ := st.CreateResource(ctx, store.Resource{Name: "box", Protocol: "ssh", Host: sshd.Host, Port: sshd.Port, Login: sshd.User},
		&store.Secrets{Password: sshd.Password})
	if _, err := st.CreateGrantMode(ctx, res.ID, "user", alice.ID, store.GrantBoth); err != nil {
		t.Fatal(err)
	}
	st.CreateGrant(ctx, res.ID, "user", bob.ID)
	f := &filesFixture{p: p, res: res, alice: newBrowser(t, p.URL), bob: newBrowser(t, p.URL)}
	f.alice.signIn("alice", "alice-password-1")
	f.bob.signIn("bob", "bob-password-12")
	tu, err := user.Lookup(targets.TestUser)
	if err != nil {
		t.Fatal(err)
	}
	name := "kw-files-" + rand.Text()[:10]
	if resp := f.action("mkdir", url.Values{"path": {tu.HomeDir}, "dir": {tu.HomeDir}, "name": {name}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("mkdir: %d", resp.StatusCode)
	}
	f.dir = filepath.Join(tu.HomeDir, name)
	if fi, err := os.Stat(f.dir); err != nil || !fi.IsDir() {
		t.Fatalf("work folder not created on the target: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(f.dir) })
	return f
}

func (f *filesFixture) url(op string, q url.Values) string {
	return fmt.Sprintf("%s/files/%d/%s?%s", f.p.URL, f.res.ID, op, q.Encode())
}

// action posts a file action's form as alice.
func (f *filesFixture) action(op string, form url.Values) *http.Response {
	return f.alice.post(fmt.Sprintf("/files/%d/%s", f.res.ID, op), form)
}

// flash is the message alice's next page shows.
func (f *filesFixture) flash(t *testing.T) string {
	t.Helper()
	_, body := f.alice.get("/account")
	i := strings.Index(body, `class="flash`)
	if i < 0 {
		return ""
	}
	j := strings.Index(body[i:], "</p>")
	return body[i : i+j]
}

// upload sends body as the file name in dir, as the page's script does.
func (f *filesFixture) upload(t *testing.T, dir, name string, body io.Reader, size int64) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, f.url("upload", url.Values{"path": {dir}, "name": {name}}), body)
	req.ContentLength = size
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := f.alice.client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var answer struct {
		Files []struct {
			OK      bool   `json:"ok"`
			Message string `json:"message"`
		} `json:"files"`
	}
	json.NewDecoder(resp.Body).Decode(&answer)
	if len(answer.Files) != 1 {
		return resp.StatusCode, ""
	}
	return resp.StatusCode, answer.Files[0].Message
}

func (f *filesFixture) download(t *testing.T, p string) *http.Response {
	t.Helper()
	resp, err := f.alice.client.Get(f.url("download", url.Values{"path": {p}}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// leftovers lists the upload temporary files left in dir.
func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, ".keyway-upload-*"))
	return m
}

// TestFilesOperations runs every file operation through portal, embedded
// gateway and a real sshd, with odd names, refusals and limits.
// TestFilesOperations runs the file browser against OpenSSH's
// internal-sftp and against Dropbear with OpenSSH's sftp-server.
func TestFilesOperations(t *testing.T) {
	for _, server := range targets.SSHServers() {
		t.Run(server.Name, func(t *testing.T) {
			testFilesOperations(t, newFilesFixtureOn(t, server.Start(t)))
		})
	}
}

func testFilesOperations(t *testing.T, f *filesFixture) {
	ctx := context.Background()

	// Only a files grant opens the browser; ids cannot be probed.
	if code, _ := f.bob.get(fmt.Sprintf("/files/%d", f.res.ID)); code != http.StatusNotFound {
		t.Errorf("bob (terminal grant only) got %d on the file browser, want 404", code)
	}
	if code, _ := f.alice.get("/files/9999"); code != http.StatusNotFound {
		t.Errorf("unknown resource: %d", code)
	}
	// A file action from another site is refused (cross-origin protection).
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("%s/files/%d/mkdir", f.p.URL, f.res.ID),
		strings.NewReader(url.Values{"path": {f.dir}, "name": {"csrf"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	resp, err := f.alice.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || exists(filepath.Join(f.dir, "csrf")) == nil {
		t.Errorf("cross-site mkdir: %s", resp.Status)
	}
	code, body := f.alice.get(fmt.Sprintf("/files/%d", f.res.ID))
	if code != http.StatusOK || !strings.Contains(body, filepath.Base(f.dir)) {
		t.Fatalf("home listing: %d, work folder missing", code)
	}

	names := []string{"plain.txt", "with space.txt", "ünïcødé ✓.txt", "new\nline.txt", `quote" and \ back;.txt`, "%41 percent.txt", "-dash"}
	for _, name := range names {
		content := []byte("content of " + name)
		if code, msg := f.upload(t, f.dir, name, bytes.NewReader(content), int64(len(content))); code != http.StatusOK {
			t.Fatalf("upload %q: %d %s", name, code, msg)
		}
		onDisk, err := os.ReadFile(filepath.Join(f.dir, name))
		if err != nil || !bytes.Equal(onDisk, content) {
			t.Errorf("%q on the target: %q, %v", name, onDisk, err)
		}
		resp := f.download(t, filepath.Join(f.dir, name))
		got, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || !bytes.Equal(got, content) || resp.ContentLength != int64(len(content)) {
			t.Errorf("download %q: %d, %q, length %d", name, resp.StatusCode, got, resp.ContentLength)
		}
		cd := resp.Header.Get("Content-Disposition")
		if strings.ContainsAny(cd, "\n\r") || !strings.HasPrefix(cd, `attachment; filename="`) {
			t.Errorf("download %q: Content-Disposition %q", name, cd)
		}
		if got := dispositionName(t, cd); got != name {
			t.Errorf("Content-Disposition of %q names %q", name, got)
		}
	}
	if leftovers(t, f.dir) != nil {
		t.Errorf("upload temporaries left: %v", leftovers(t, f.dir))
	}

	// Names that are not one path element are refused, never reinterpreted.
	for _, name := range []string{"..", ".", "a/b", "../escape.txt", "nul\x00.txt", ""} {
		if code, _ := f.upload(t, f.dir, name, strings.NewReader("x"), 1); code != http.StatusBadRequest {
			t.Errorf("upload named %q: %d, want 400", name, code)
		}
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(f.dir), "escape.txt")); err == nil {
		t.Error("a name with .. wrote outside the folder")
	}
	// A path with .. is the target's to resolve: it means what it says there.
	resp = f.download(t, f.dir+"/../"+filepath.Base(f.dir)+"/plain.txt")
	if got, _ := io.ReadAll(resp.Body); string(got) != "content of plain.txt" {
		t.Errorf("download through ..: %d %q", resp.StatusCode, got)
	}

	// The form without script: multipart, several files, replace on.
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	mw.WriteField("replace", "on")
	for _, name := range []string{"form one.txt", "plain.txt"} {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="files"; filename="%s"`, name))
		w, _ := mw.CreatePart(h)
		io.WriteString(w, "from the form: "+name)
	}
	mw.Close()
	resp, err = f.alice.client.Post(f.url("upload", url.Values{"path": {f.dir}}), mw.FormDataContentType(), &mp)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(f.flash(t), "form one.txt was uploaded") {
		t.Errorf("multipart upload: %d", resp.StatusCode)
	}
	if b, _ := os.ReadFile(filepath.Join(f.dir, "plain.txt")); string(b) != "from the form: plain.txt" {
		t.Errorf("multipart upload with replace: plain.txt holds %q", b)
	}
	os.WriteFile(filepath.Join(f.dir, "plain.txt"), []byte("content of plain.txt"), 0o644)

	// An existing name is kept unless the upload replaces it.
	if code, msg := f.upload(t, f.dir, "plain.txt", strings.NewReader("new"), 3); code != http.StatusConflict || !strings.Contains(msg, "already exists") {
		t.Errorf("upload over an existing file: %d %q", code, msg)
	}

	steps := []struct {
		name   string
		op     string
		form   url.Values
		flash  string
		verify func() error
	}{
		{"mkdir with unicode", "mkdir", url.Values{"path": {f.dir}, "name": {"dössier neu"}}, "was created",
			func() error { return isDir(filepath.Join(f.dir, "dössier neu")) }},
		{"rename", "rename", url.Values{"path": {f.dir + "/with space.txt"}, "name": {"renamed ✓.txt"}}, "was renamed",
			func() error { return exists(filepath.Join(f.dir, "renamed ✓.txt")) }},
		{"rename onto an existing file", "rename", url.Values{"path": {f.dir + "/plain.txt"}, "name": {"-dash"}}, "already exists", nil},
		{"rename to a path", "rename", url.Values{"path": {f.dir + "/plain.txt"}, "name": {"../out.txt"}}, "not a valid file name", nil},
		{"chmod", "chmod", url.Values{"path": {f.dir + "/plain.txt"}, "mode": {"600"}}, "are now 600",
			func() error { return hasMode(filepath.Join(f.dir, "plain.txt"), 0o600) }},
		{"chmod bad mode", "chmod", url.Values{"path": {f.dir + "/plain.txt"}, "mode": {"rwx"}}, "octal", nil},
		{"delete a file", "delete", url.Values{"path": {f.dir + "/-dash"}}, "was deleted",
			func() error { return gone(filepath.Join(f.dir, "-dash")) }},
		{"delete needs permission", "delete", url.Values{"path": {"/etc/hostname"}}, "Permission denied", nil},
		{"chmod needs ownership", "chmod", url.Values{"path": {"/etc"}, "mode": {"777"}}, "could not be changed: ", nil},
		{"mkdir where the user may not", "mkdir", url.Values{"path": {"/"}, "name": {"kw-forbidden"}}, "Permission denied", nil},
	}
	for _, s := range steps {
		s.form.Set("dir", f.dir)
		if resp := f.action(s.op, s.form); resp.StatusCode != http.StatusSeeOther {
			t.Errorf("%s: %d", s.name, resp.StatusCode)
			continue
		}
		if msg := f.flash(t); !strings.Contains(msg, s.flash) {
			t.Errorf("%s: flash %q, want %q", s.name, msg, s.flash)
		}
		if s.verify != nil {
			if err := s.verify(); err != nil {
				t.Errorf("%s: %v", s.name, err)
			}
		}
	}

	// Listings: sorted, hidden files on request, the target's refusal.
	os.WriteFile(filepath.Join(f.dir, ".hidden"), []byte("h"), 0o644)
	_, body = f.alice.get(fmt.Sprintf("/files/%d?%s", f.res.ID, url.Values{"path": {f.dir}}.Encode()))
	if strings.Contains(body, ".hidden") || !strings.Contains(body, "dössier neu") || !strings.Contains(body, "new␊line.txt") {
		t.Errorf("listing without hidden files is wrong")
	}
	_, body = f.alice.get(fmt.Sprintf("/files/%d?%s", f.res.ID, url.Values{"path": {f.dir}, "hidden": {"1"}}.Encode()))
	if !strings.Contains(body, ".hidden") {
		t.Errorf("hidden files not shown on request")
	}
	if code, body := f.alice.get(fmt.Sprintf("/files/%d?path=/root", f.res.ID)); code != http.StatusForbidden || !strings.Contains(body, "Permission denied") {
		t.Errorf("listing /root: %d", code)
	}
	// A symlink to a folder is followed.
	os.Symlink(filepath.Join(f.dir, "dössier neu"), filepath.Join(f.dir, "link"))
	if code, body := f.alice.get(fmt.Sprintf("/files/%d?%s", f.res.ID, url.Values{"path": {f.dir + "/link"}}.Encode())); code != http.StatusOK || !strings.Contains(body, "dössier neu") {
		t.Errorf("following a symlink: %d", code)
	}

	// Permission denied on upload, in the target's words; nothing left.
	os.Chmod(filepath.Join(f.dir, "dössier neu"), 0o555)
	if code, msg := f.upload(t, f.dir+"/dössier neu", "x.txt", strings.NewReader("x"), 1); code != http.StatusForbidden || !strings.Contains(msg, "Permission denied") {
		t.Errorf("upload into a read-only folder: %d %q", code, msg)
	}

	// A folder downloads as a zip, streamed.
	resp = f.download(t, f.dir)
	zbody, _ := io.ReadAll(resp.Body)
	zr, err := zip.NewReader(bytes.NewReader(zbody), int64(len(zbody)))
	if err != nil || resp.Header.Get("Content-Type") != "application/zip" {
		t.Fatalf("folder download: %v, %s", err, resp.Header.Get("Content-Type"))
	}
	found := map[string]bool{}
	for _, zf := range zr.File {
		found[zf.Name] = true
	}
	if !found["ünïcødé ✓.txt"] || !found["dössier neu/"] || !found["new\nline.txt"] {
		t.Errorf("zip holds %v", found)
	}

	// Limits and switches on the resource.
	res, _ := f.p.Store.ResourceByID(ctx, f.res.ID)
	res.Options.MaxUploadBytes = 1000
	f.p.Store.UpdateResource(ctx, res, nil)
	if code, msg := f.upload(t, f.dir, "big.bin", bytes.NewReader(make([]byte, 2000)), 2000); code != http.StatusRequestEntityTooLarge || !strings.Contains(msg, "not sent") {
		t.Errorf("known-size upload over the limit: %d %q", code, msg)
	}
	// Without a length the upload is cut off at the limit.
	if code, msg := f.upload(t, f.dir, "big.bin", io.MultiReader(bytes.NewReader(make([]byte, 2000))), -1); code != http.StatusRequestEntityTooLarge || !strings.Contains(msg, "nothing was saved") {
		t.Errorf("unknown-size upload over the limit: %d %q", code, msg)
	}
	if err := gone(filepath.Join(f.dir, "big.bin")); err != nil || leftovers(t, f.dir) != nil {
		t.Errorf("an upload over the limit left files: %v %v", err, leftovers(t, f.dir))
	}
	res.Options.MaxUploadBytes, res.Options.NoUpload, res.Options.NoDownload = 0, true, true
	f.p.Store.UpdateResource(ctx, res, nil)
	if code, _ := f.upload(t, f.dir, "no.txt", strings.NewReader("x"), 1); code != http.StatusForbidden {
		t.Errorf("upload while disabled: %d", code)
	}
	if resp := f.download(t, f.dir+"/plain.txt"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("download while disabled: %d", resp.StatusCode)
	}

	// Every operation is audited, with path, size and result.
	evs, err := f.p.Store.SearchAudit(ctx, store.AuditFilter{Actor: "alice", Action: "file.upload"})
	if err != nil {
		t.Fatal(err)
	}
	var ok, failed int
	for _, ev := range evs {
		if ev.Outcome == "success" {
			ok++
			if ev.Details["size"] == "" || ev.Details["path"] == "" || ev.Target != "box" {
				t.Errorf("upload event without path or size: %+v", ev)
			}
		} else {
			failed++
		}
	}
	if ok != len(names)+2 || failed == 0 { // and the two from the form
		t.Errorf("upload events: %d ok, %d failed", ok, failed)
	}
	for _, action := range []string{"file.list", "file.download", "file.mkdir", "file.rename", "file.delete", "file.chmod"} {
		if evs, _ := f.p.Store.SearchAudit(ctx, store.AuditFilter{Actor: "alice", Action: action}); len(evs) == 0 {
			t.Errorf("no %s audit event", action)
		}
	}
}

// dispositionName reads the exact name from a Content-Disposition's
// filename* parameter.
func dispositionName(t *testing.T, cd string) string {
	t.Helper()
	_, enc, ok := strings.Cut(cd, "filename*=UTF-8''")
	if !ok {
		return ""
	}
	name, err := url.PathUnescape(enc)
	if err != nil {
		t.Errorf("filename* %q: %v", enc, err)
	}
	return name
}

func exists(p string) error { _, err := os.Lstat(p); return err }

func gone(p string) error {
	if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s still exists", p)
	}
	return nil
}

func isDir(p string) error {
	fi, err := os.Stat(p)
	if err == nil && !fi.IsDir() {
		err = fmt.Errorf("%s is not a folder", p)
	}
	return err
}

func hasMode(p string, m os.FileMode) error {
	fi, err := os.Stat(p)
	if err == nil && fi.Mode().Perm() != m {
		err = fmt.Errorf("%s has mode %o, want %o", p, fi.Mode().Perm(), m)
	}
	return err
}

// pattern is a reproducible stream of n pseudo-random bytes, made as it is
// read: large files are never held in memory.
func pattern(seed byte, n int64) io.Reader {
	var key [32]byte
	key[0] = seed
	return io.LimitReader(mrand.NewChaCha8(key), n)
}

// failingReader yields n bytes of r, then fails, as a browser that goes
// away mid-upload.
type failingReader struct {
	r io.Reader
	n int64
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("browser gone")
	}
	if int64(len(p)) > f.n {
		p = p[:f.n]
	}
	n, err := f.r.Read(p)
	f.n -= int64(n)
	return n, err
}

// fileEvents returns alice's audit events of action on path.
func (f *filesFixture) fileEvents(t *testing.T, action, path string) []store.AuditEvent {
	t.Helper()
	evs, err := f.p.Store.SearchAudit(context.Background(), store.AuditFilter{Actor: "alice", Action: action})
	if err != nil {
		t.Fatal(err)
	}
	var out []store.AuditEvent
	for _, ev := range evs {
		if ev.Details["path"] == path {
			out = append(out, ev)
		}
	}
	return out
}

// TestFilesLargeAndInterrupted streams a 1 GiB file up and down through
// portal, gateway and sshd, checked by SHA-256 at both ends, then cuts
// an upload and a download short.
func TestFilesLargeAndInterrupted(t *testing.T) {
	f := newFilesFixture(t)
	size := int64(1 << 30)

	up := sha256.New()
	name := "large.bin"
	code, msg := f.upload(t, f.dir, name, io.TeeReader(pattern(1, size), up), size)
	if code != http.StatusOK {
		t.Fatalf("upload 1 GiB: %d %s", code, msg)
	}
	want := hex.EncodeToString(up.Sum(nil))
	if got := fileSHA256(t, filepath.Join(f.dir, name)); got != want {
		t.Fatalf("the target holds SHA-256 %s, the browser sent %s", got, want)
	}
	resp := f.download(t, filepath.Join(f.dir, name))
	down := sha256.New()
	n, err := io.Copy(down, resp.Body)
	if err != nil || n != size || resp.ContentLength != size || hex.EncodeToString(down.Sum(nil)) != want {
		t.Fatalf("download: %d bytes of %d (Content-Length %d), %v, SHA-256 match %v", n, size, resp.ContentLength, err, hex.EncodeToString(down.Sum(nil)) == want)
	}

	// A browser that leaves mid-upload: nothing under the final name, no
	// temporary file, and the audit says so.
	cut := "cut short.bin"
	if code, _ := f.upload(t, f.dir, cut, &failingReader{r: pattern(2, 64<<20), n: 8 << 20}, 64<<20); code == http.StatusOK {
		t.Fatal("an interrupted upload succeeded")
	}
	waitFor(t, "the interrupted upload's audit event", func() bool { return len(f.fileEvents(t, "file.upload", f.dir+"/"+cut)) > 0 }, nil)
	if ev := f.fileEvents(t, "file.upload", f.dir+"/"+cut)[0]; ev.Outcome != "failure" || !strings.Contains(ev.Reason, "interrupted") {
		t.Errorf("interrupted upload audited as %s: %s", ev.Outcome, ev.Reason)
	}
	if err := gone(filepath.Join(f.dir, cut)); err != nil || leftovers(t, f.dir) != nil {
		t.Errorf("an interrupted upload left files: %v %v", err, leftovers(t, f.dir))
	}

	// A browser that leaves mid-download frees the stream at once.
	resp = f.download(t, filepath.Join(f.dir, name))
	io.CopyN(io.Discard, resp.Body, 4<<20)
	resp.Body.Close()
	waitFor(t, "the interrupted download's audit event", func() bool {
		for _, ev := range f.fileEvents(t, "file.download", filepath.Join(f.dir, name)) {
			if ev.Outcome == "failure" {
				return true
			}
		}
		return false
	}, nil)
}

func fileSHA256(t *testing.T, p string) string {
	t.Helper()
	fh, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	h := sha256.New()
	io.Copy(h, fh)
	return hex.EncodeToString(h.Sum(nil))
}

// TestDotfilesProtected: by default a files grant cannot upload, rename,
// delete, chmod or make dotfiles, also through a symlink into a dot
// folder; downloads still work, and the resource can allow changes.
func TestDotfilesProtected(t *testing.T) {
	ctx := context.Background()
	f := newFilesFixture(t)
	ssh := filepath.Join(f.dir, ".ssh")
	os.Mkdir(ssh, 0o700)
	keys := filepath.Join(ssh, "authorized_keys")
	os.WriteFile(keys, []byte("ssh-ed25519 AAAA owner\n"), 0o600)
	rc := filepath.Join(f.dir, ".bashrc")
	os.WriteFile(rc, []byte("echo hi\n"), 0o644)
	os.Symlink(ssh, filepath.Join(f.dir, "innocent"))
	os.WriteFile(filepath.Join(f.dir, "plain.txt"), []byte("x"), 0o644)
	// The target's login owns them, as its own dotfiles would be.
	tu, _ := user.Lookup(targets.TestUser)
	var uid, gid int
	fmt.Sscan(tu.Uid, &uid)
	fmt.Sscan(tu.Gid, &gid)
	for _, p := range []string{ssh, keys, rc, filepath.Join(f.dir, "innocent"), filepath.Join(f.dir, "plain.txt")} {
		os.Lchown(p, uid, gid)
	}

	refused := func(what string) {
		t.Helper()
		if msg := f.flash(t); !strings.Contains(msg, "protected") {
			t.Errorf("%s: flash %q, want a refusal naming the protection", what, msg)
		}
	}
	for _, tc := range []struct {
		what, op string
		form     url.Values
	}{
		{"delete .bashrc", "delete", url.Values{"path": {rc}, "dir": {f.dir}}},
		{"rename .bashrc", "rename", url.Values{"path": {rc}, "dir": {f.dir}, "name": {"bashrc"}}},
		{"rename to a dotfile", "rename", url.Values{"path": {filepath.Join(f.dir, "plain.txt")}, "dir": {f.dir}, "name": {".profile"}}},
		{"chmod through the symlink", "chmod", url.Values{"path": {filepath.Join(f.dir, "innocent", "authorized_keys")}, "dir": {f.dir}, "mode": {"666"}}},
		{"delete through the symlink", "delete", url.Values{"path": {filepath.Join(f.dir, "innocent", "authorized_keys")}, "dir": {f.dir}}},
		{"make a dot folder", "mkdir", url.Values{"path": {f.dir}, "dir": {f.dir}, "name": {".config"}}},
	} {
		if resp := f.action(tc.op, tc.form); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("%s: %d", tc.what, resp.StatusCode)
		}
		refused(tc.what)
	}
	for _, tc := range []struct{ dir, name string }{
		{ssh, "authorized_keys"},
		{filepath.Join(f.dir, "innocent"), "authorized_keys"},
		{f.dir, ".bashrc"},
	} {
		body := "ssh-ed25519 AAAA attacker\n"
		code, msg := f.upload(t, tc.dir, tc.name, strings.NewReader(body), int64(len(body)))
		if code != http.StatusForbidden || !strings.Contains(msg, "protected") {
			t.Errorf("upload %s/%s: %d %q, want 403 and the protection named", tc.dir, tc.name, code, msg)
		}
	}
	if b, _ := os.ReadFile(keys); string(b) != "ssh-ed25519 AAAA owner\n" {
		t.Fatalf("authorized_keys changed: %q", b)
	}
	if fi, _ := os.Stat(keys); fi.Mode().Perm() != 0o600 {
		t.Fatalf("authorized_keys mode changed: %v", fi.Mode())
	}
	if _, err := os.Stat(rc); err != nil {
		t.Fatalf(".bashrc: %v", err)
	}
	if _, err := os.Stat(filepath.Join(f.dir, ".config")); err == nil {
		t.Fatal(".config was made")
	}
	// Reading is not changing.
	if resp := f.download(t, rc); resp.StatusCode != http.StatusOK {
		t.Errorf("download .bashrc: %d", resp.StatusCode)
	}

	// The admin allows changes: the same delete goes through.
	res := f.res
	res.Options.AllowDotfileChanges = true
	if err := f.p.Store.UpdateResource(ctx, res, nil); err != nil {
		t.Fatal(err)
	}
	f.action("delete", url.Values{"path": {rc}, "dir": {f.dir}})
	if _, err := os.Stat(rc); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("with changes allowed, .bashrc is still there: %v (%s)", err, f.flash(t))
	}
}

// TestZipEntryNames: a file whose name holds a backslash goes into a
// folder's zip under a name without one (zip tools on Windows take it for
// a separator).
func TestZipEntryNames(t *testing.T) {
	f := newFilesFixture(t)
	sub := filepath.Join(f.dir, "box")
	os.Mkdir(sub, 0o755)
	os.WriteFile(filepath.Join(sub, `..\..\evil.bat`), []byte("x"), 0o644)
	resp := f.download(t, sub)
	b, _ := io.ReadAll(resp.Body)
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("zip: %v (%d)", err, resp.StatusCode)
	}
	if len(zr.File) != 1 || strings.Contains(zr.File[0].Name, `\`) {
		for _, z := range zr.File {
			t.Errorf("entry %q", z.Name)
		}
		t.Fatal("want one entry without a backslash")
	}
}
