package httpui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/files"
	"github.com/keyway-dev/keyway/portal/sessions"
	"github.com/keyway-dev/keyway/portal/store"
	"github.com/keyway-dev/keyway/web/ui"
)

// isFileUpload reports whether r is a file upload, whose body is limited
// by the resource's upload size instead of maxFormBody.
func isFileUpload(r *http.Request) bool {
	return r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/files/") && strings.HasSuffix(r.URL.Path, "/upload")
}

// filesResource admits a files request on the resource at {id}: the
// hook, the user's files grant and the policies, in that order. A
// refusal is answered here (404 for a missing grant, so ids cannot be
// probed) and audited by the session manager. What the policies forbid
// (uploads, downloads) comes back folded into the resource's options.
func (s *Server) filesResource(w http.ResponseWriter, r *http.Request) (store.User, store.Resource, *sessions.Admission, bool) {
	u, _ := currentUser(r)
	id, _ := pathID(r) // a malformed id is a resource that does not exist
	adm, err := s.live.Admit(r.Context(), sessions.Request{User: u, ResourceID: id, Kind: sessions.KindFiles,
		Client: s.clientInfo(r), WebToken: s.Sessions.Token(r.Context()), MFAAt: s.sessionMFAAt(r)})
	if err != nil {
		ref := asRefusal(err)
		if ref.Code == sessions.CodeStepUp && r.Method == http.MethodGet && r.URL.Path == fmt.Sprintf("/files/%d", id) {
			// The page sends the user through an MFA check and back; the
			// operations below it answer with the refusal's words.
			s.redirectStepUp(w, r)
			return u, store.Resource{}, nil, false
		}
		s.renderError(w, r, ref.Status, ref.Message)
		return u, store.Resource{}, nil, false
	}
	res := adm.Resource()
	eff := adm.Effective()
	res.Options.NoUpload = res.Options.NoUpload || !eff.Upload
	res.Options.NoDownload = res.Options.NoDownload || !eff.Download
	return u, res, adm, true
}

// filesSession is one SFTP session through a gateway, for one request.
type filesSession struct {
	*files.Client
	res     store.Resource
	gateway string
	release func()
}

// protect refuses a change to p (files.ErrProtected) when it is, or
// resolves into, a dotfile and the resource protects them. follow is for
// operations that act on what a final symlink points to.
func (f *filesSession) protect(p string, follow bool) error {
	if f.res.Options.AllowDotfileChanges {
		return nil
	}
	protected, err := f.Protected(p, follow)
	if err != nil {
		return fmt.Errorf("check %q for dotfiles: %w", p, err)
	}
	if protected {
		return files.ErrProtected
	}
	return nil
}

func (f *filesSession) Close() error {
	err := f.Client.Close()
	f.release()
	return err
}

// openFiles opens the SFTP session of an admitted files request,
// through a gateway chosen as for terminals (tunnel mode and segments
// included). It is listed among the running sessions while the operation
// lasts (a long upload or download), and ended like the others when
// access ends. A failure comes back in words for the user.
func (s *Server) openFiles(ctx context.Context, adm *sessions.Admission) (*filesSession, *sessions.Refusal) {
	sess, err := s.live.Open(ctx, adm)
	if err != nil {
		return nil, asRefusal(err)
	}
	c, err := files.Open(sess.Conn)
	if err != nil {
		sess.End("sftp failed", err.Error())
		s.Logger.Error("start SFTP session", "user", sess.User.Name, "resource", sess.Resource.Name, "gateway", sess.Gateway.Name, "err", err)
		return nil, &sessions.Refusal{Code: "sftp_failed", Status: http.StatusBadGateway,
			Message: fmt.Sprintf("The SFTP service of %s did not answer as expected, so its files cannot be shown.", sess.Resource.Name)}
	}
	res := adm.Resource()
	res.Options.NoUpload = res.Options.NoUpload || !sess.Effective.Upload
	res.Options.NoDownload = res.Options.NoDownload || !sess.Effective.Download
	return &filesSession{Client: c, res: res, gateway: sess.Gateway.Name, release: func() { sess.End("done", "") }}, nil
}

// fileEvent audits one file operation: who, on which resource, the path,
// the size when there is one, and the result.
func (s *Server) fileEvent(r *http.Request, u store.User, res store.Resource, action, p string, size int64, err error, details map[string]string) {
	ev := audit.Event{Actor: u.Name, Action: action, Target: res.Name, Outcome: audit.OutcomeSuccess, Details: map[string]string{"path": p}}
	for k, v := range details {
		ev.Details[k] = v
	}
	if size >= 0 {
		ev.Details["size"] = strconv.FormatInt(size, 10)
	}
	if err != nil {
		ev.Outcome, ev.Reason = audit.OutcomeFailure, files.Message(err)
	}
	s.record(r, ev)
}

func filesHref(id int64, dir string, q url.Values) string {
	v := url.Values{}
	if dir != "" {
		v.Set("path", dir)
	}
	for _, k := range []string{"hidden", "sort", "order"} {
		if q.Get(k) != "" {
			v.Set(k, q.Get(k))
		}
	}
	if len(v) == 0 {
		return fmt.Sprintf("/files/%d", id)
	}
	return fmt.Sprintf("/files/%d?%s", id, v.Encode())
}

// refusalStatus is the HTTP status for a target's refusal.
func refusalStatus(err error) int {
	switch {
	case errors.Is(err, fs.ErrPermission), errors.Is(err, files.ErrProtected):
		return http.StatusForbidden
	case errors.Is(err, fs.ErrNotExist):
		return http.StatusNotFound
	case errors.Is(err, files.ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, files.ErrExists):
		return http.StatusConflict
	}
	return http.StatusBadRequest
}

func (s *Server) filesPage(w http.ResponseWriter, r *http.Request) {
	u, res, adm, ok := s.filesResource(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	dir := q.Get("path")
	if dir != "" && files.CheckPath(dir) != nil {
		s.renderError(w, r, http.StatusBadRequest, "This is not a path on the target: paths start with a slash.")
		return
	}
	fsess, failure := s.openFiles(r.Context(), adm)
	if failure != nil {
		s.fileEvent(r, u, res, audit.ActionFileList, dir, -1, errors.New(failure.Message), failure.Details)
		s.renderError(w, r, http.StatusBadGateway, failure.Message)
		return
	}
	defer fsess.Close()
	home, err := fsess.Home()
	if err != nil {
		s.renderError(w, r, http.StatusBadGateway, "The target did not say where the home directory is: "+files.Message(err))
		return
	}
	if dir == "" {
		dir = home
	}
	v := ui.FilesView{
		ResourceID: res.ID, ResourceName: res.Name, Address: address(res), ShowHidden: q.Get("hidden") == "1",
		CanUpload: !res.Options.NoUpload, CanDownload: !res.Options.NoDownload, MaxUpload: res.Options.MaxUploadBytes,
		ProtectDotfiles: !res.Options.AllowDotfileChanges,
		Sort:            q.Get("sort"), Desc: q.Get("order") == "desc",
	}
	resolved, err := fsess.Resolve(dir)
	if err == nil {
		var st files.Entry
		if st, err = fsess.Stat(resolved); err == nil && !st.IsDir {
			err = fmt.Errorf("%s is a file, not a folder", resolved)
		}
	}
	v.Dir = dir
	if err == nil {
		v.Dir = resolved
	}
	v.Crumbs = crumbs(res.ID, v.Dir, q)
	v.HereHref = filesHref(res.ID, v.Dir, q)
	v.UploadHref = fmt.Sprintf("/files/%d/upload?%s", res.ID, url.Values{"path": {v.Dir}}.Encode())
	hq := url.Values{"sort": {q.Get("sort")}, "order": {q.Get("order")}}
	if !v.ShowHidden {
		hq.Set("hidden", "1")
	}
	v.HiddenHref = filesHref(res.ID, v.Dir, hq)
	if v.Dir != "/" {
		v.ParentHref = filesHref(res.ID, path.Dir(v.Dir), q)
	}
	var entries []files.Entry
	if err == nil {
		entries, err = fsess.List(v.Dir)
	}
	s.fileEvent(r, u, res, audit.ActionFileList, v.Dir, -1, err, map[string]string{"gateway": fsess.gateway})
	status := http.StatusOK
	if err != nil {
		v.Error = fmt.Sprintf("The target refused to list %s: %s.", v.Dir, files.Message(err))
		status = refusalStatus(err)
	}
	homeUID := uint32(1 << 31)
	if st, err := fsess.Stat(home); err == nil {
		homeUID = st.UID
	}
	for _, e := range entries {
		if !v.ShowHidden && strings.HasPrefix(e.Name, ".") {
			v.HiddenCount++
			continue
		}
		v.Entries = append(v.Entries, fileRow(res, e, homeUID, q))
	}
	sortRows(v.Entries, v.Sort, v.Desc)
	v.SortHref = map[string]string{}
	for _, k := range []string{"name", "size", "modified", "permissions", "owner"} {
		sq := url.Values{"hidden": {q.Get("hidden")}, "sort": {k}}
		if k == v.Sort && !v.Desc || (v.Sort == "" && k == "name" && !v.Desc) {
			sq.Set("order", "desc")
		}
		v.SortHref[k] = filesHref(res.ID, v.Dir, sq)
	}
	p := s.page(r, "Files on "+res.Name, "home")
	p.Bundle = "files"
	s.render(w, r, status, ui.Files(p, v))
}

// crumbs splits dir into links to each folder above it.
func crumbs(id int64, dir string, q url.Values) []ui.Crumb {
	out := []ui.Crumb{{Name: "/", Href: filesHref(id, "/", q)}}
	p := ""
	for _, part := range strings.Split(strings.Trim(dir, "/"), "/") {
		if part == "" {
			continue
		}
		p += "/" + part
		out = append(out, ui.Crumb{Name: part, Href: filesHref(id, p, q)})
	}
	return out
}

func fileRow(res store.Resource, e files.Entry, homeUID uint32, q url.Values) ui.FileRow {
	row := ui.FileRow{Name: e.Name, Path: e.Path, IsDir: e.IsDir, Link: e.Link, Broken: e.Broken,
		Size: e.Size, Modified: e.ModTime, Mode: e.Mode.String(), Octal: fmt.Sprintf("%o", e.Mode.Perm()|setBits(e.Mode)),
		Owner: owner(e.UID, homeUID, res.Login)}
	if e.IsDir {
		row.Href = filesHref(res.ID, e.Path, q)
	}
	if !res.Options.NoDownload && !e.Broken {
		row.DownloadHref = fmt.Sprintf("/files/%d/download?%s", res.ID, url.Values{"path": {e.Path}}.Encode())
		if !e.IsDir {
			row.Href = row.DownloadHref
		}
	}
	return row
}

func setBits(m fs.FileMode) fs.FileMode {
	var b fs.FileMode
	if m&fs.ModeSetuid != 0 {
		b |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		b |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		b |= 0o1000
	}
	return b
}

// owner names a file's owner. SFTP version 3 gives numeric ids only; the
// home folder's owner is the login user, and 0 is root everywhere.
func owner(uid, homeUID uint32, login string) string {
	switch uid {
	case homeUID:
		return login
	case 0:
		return "root"
	}
	return "uid " + strconv.FormatUint(uint64(uid), 10)
}

func sortRows(rows []ui.FileRow, key string, desc bool) {
	cmp := func(a, b ui.FileRow) int {
		switch key {
		case "size":
			return compare(a.Size, b.Size)
		case "modified":
			return a.Modified.Compare(b.Modified)
		case "permissions":
			return strings.Compare(a.Mode, b.Mode)
		case "owner":
			return strings.Compare(a.Owner, b.Owner)
		}
		return strings.Compare(a.Name, b.Name)
	}
	slices.SortStableFunc(rows, func(a, b ui.FileRow) int {
		if a.IsDir != b.IsDir { // folders first, either way
			if a.IsDir {
				return -1
			}
			return 1
		}
		c := cmp(a, b)
		if c == 0 {
			c = strings.Compare(a.Name, b.Name)
		}
		if desc {
			return -c
		}
		return c
	})
}

func compare(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// contentDisposition is an attachment header for name that no name can
// break: an ASCII fallback in filename= and the exact name in filename*
// (RFC 6266, RFC 5987).
func contentDisposition(name string) string {
	var ascii, ext strings.Builder
	for _, r := range name {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' || r == '%' || r == ';' {
			ascii.WriteByte('_')
		} else {
			ascii.WriteRune(r)
		}
	}
	for _, b := range []byte(name) {
		if isAttrChar(b) {
			ext.WriteByte(b)
		} else {
			fmt.Fprintf(&ext, "%%%02X", b)
		}
	}
	return fmt.Sprintf(`attachment; filename="%s"; filename*=UTF-8''%s`, ascii.String(), ext.String())
}

// isAttrChar reports whether b may appear unencoded in an RFC 5987 value.
func isAttrChar(b byte) bool {
	return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || strings.IndexByte("!#$&+-.^_`|~", b) >= 0
}

func (s *Server) fileDownload(w http.ResponseWriter, r *http.Request) {
	u, res, adm, ok := s.filesResource(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	if len(q["path"]) > 1 || q.Get("bulk") == "1" {
		s.fileDownloadMany(w, r, u, res, adm, q.Get("dir"), q["path"])
		return
	}
	p := q.Get("path")
	if res.Options.NoDownload {
		s.fileEvent(r, u, res, audit.ActionFileDownload, p, -1, errors.New("downloads are disabled on this resource"), nil)
		s.renderError(w, r, http.StatusForbidden, "Downloads are disabled on "+res.Name+".")
		return
	}
	if files.CheckPath(p) != nil {
		s.renderError(w, r, http.StatusBadRequest, "This is not a path on the target: paths start with a slash.")
		return
	}
	fsess, failure := s.openFiles(r.Context(), adm)
	if failure != nil {
		s.fileEvent(r, u, res, audit.ActionFileDownload, p, -1, errors.New(failure.Message), nil)
		s.renderError(w, r, http.StatusBadGateway, failure.Message)
		return
	}
	defer fsess.Close()
	// A browser that leaves ends the SFTP session at once, which unblocks
	// any read from the target.
	stop := context.AfterFunc(r.Context(), func() { fsess.Client.Close() })
	defer stop()
	details := map[string]string{"gateway": fsess.gateway}
	st, err := fsess.Stat(p)
	if err != nil {
		s.fileEvent(r, u, res, audit.ActionFileDownload, p, -1, err, details)
		s.renderError(w, r, refusalStatus(err), fmt.Sprintf("%s cannot be downloaded: %s.", p, files.Message(err)))
		return
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	if st.IsDir {
		h.Set("Content-Type", "application/zip")
		h.Set("Content-Disposition", contentDisposition(zipName(st.Name)))
		zs, err := fsess.Zip(r.Context(), p, w)
		details["files"], details["skipped"], details["format"] = strconv.Itoa(zs.Files), strconv.Itoa(zs.Skipped), "zip"
		s.fileEvent(r, u, res, audit.ActionFileDownload, p, zs.Bytes, err, details)
		if err != nil {
			// The status is sent; cutting the connection tells the browser
			// the zip is incomplete.
			panic(http.ErrAbortHandler)
		}
		return
	}
	f, st, err := fsess.OpenFile(p)
	if err != nil {
		s.fileEvent(r, u, res, audit.ActionFileDownload, p, -1, err, details)
		s.renderError(w, r, refusalStatus(err), fmt.Sprintf("%s cannot be downloaded: %s.", p, files.Message(err)))
		return
	}
	defer f.Close()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(st.Size, 10))
	h.Set("Content-Disposition", contentDisposition(st.Name))
	n, err := f.WriteTo(w)
	if err == nil && n != st.Size {
		err = fmt.Errorf("the file changed size while it was sent: %d bytes, not %d", n, st.Size)
	}
	if r.Context().Err() != nil {
		err = errors.New("the browser disconnected before the end")
	}
	s.fileEvent(r, u, res, audit.ActionFileDownload, p, n, err, details)
	if err != nil {
		panic(http.ErrAbortHandler)
	}
}

// maxSelection bounds how many files one bulk download or delete names;
// the request's size is bounded too (the server's header limit for a
// download's query, maxFormBody for a delete's form).
const maxSelection = 1000

// selection checks a bulk request's paths: at least one, at most
// maxSelection, each an entry of dir (the folder shown). It returns the
// entry names, or the refusal in words.
func selection(dir string, paths []string) ([]string, string) {
	switch {
	case len(paths) == 0:
		return nil, "Select one or more files or folders first."
	case len(paths) > maxSelection:
		return nil, fmt.Sprintf("At most %d files and folders can be selected at once; %d were.", maxSelection, len(paths))
	}
	names, err := files.NamesIn(dir, paths)
	if err != nil {
		return nil, "Every selected file and folder must be in the folder shown; reload the page and select again."
	}
	return names, ""
}

// fileDownloadMany sends the selected entries of one folder as one zip,
// each at its top level, streamed; one audit event lists them all.
func (s *Server) fileDownloadMany(w http.ResponseWriter, r *http.Request, u store.User, res store.Resource, adm *sessions.Admission, dir string, paths []string) {
	listed, _ := json.Marshal(paths)
	details := map[string]string{"paths": string(listed), "format": "zip"}
	if res.Options.NoDownload {
		s.fileEvent(r, u, res, audit.ActionFileDownload, dir, -1, errors.New("downloads are disabled on this resource"), details)
		s.renderError(w, r, http.StatusForbidden, "Downloads are disabled on "+res.Name+".")
		return
	}
	names, refusal := selection(dir, paths)
	if refusal != "" {
		s.renderError(w, r, http.StatusBadRequest, refusal)
		return
	}
	fsess, failure := s.openFiles(r.Context(), adm)
	if failure != nil {
		s.fileEvent(r, u, res, audit.ActionFileDownload, dir, -1, errors.New(failure.Message), details)
		s.renderError(w, r, http.StatusBadGateway, failure.Message)
		return
	}
	defer fsess.Close()
	stop := context.AfterFunc(r.Context(), func() { fsess.Client.Close() })
	defer stop()
	details["gateway"] = fsess.gateway
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Type", "application/zip")
	h.Set("Content-Disposition", contentDisposition(zipName(path.Base(dir))))
	zs, err := fsess.ZipMany(r.Context(), dir, names, w)
	details["files"], details["skipped"] = strconv.Itoa(zs.Files), strconv.Itoa(zs.Skipped)
	s.fileEvent(r, u, res, audit.ActionFileDownload, dir, zs.Bytes, err, details)
	if err != nil {
		panic(http.ErrAbortHandler)
	}
}

func zipName(dir string) string {
	if dir == "/" || dir == "" {
		return "root.zip"
	}
	return dir + ".zip"
}

// uploadResult is one file's outcome, as JSON for the page's script.
type uploadResult struct {
	Name    string `json:"name"`
	Size    int64  `json:"size"`
	OK      bool   `json:"ok"`
	Message string `json:"message"`
}

// bodyReader remembers the error reading the browser's body, to tell an
// interrupted upload from a target's refusal.
type bodyReader struct {
	r   io.Reader
	err error
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

func megabytes(n int64) string {
	return strconv.FormatFloat(float64(n)/(1<<20), 'f', -1, 64) + " MB"
}

func (s *Server) fileUpload(w http.ResponseWriter, r *http.Request) {
	u, res, adm, ok := s.filesResource(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	dir := q.Get("path")
	wantJSON := strings.Contains(r.Header.Get("Accept"), "application/json")
	answer := func(status int, results []uploadResult) {
		if wantJSON {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			json.NewEncoder(w).Encode(map[string]any{"files": results})
			return
		}
		var msgs []string
		kind := "success"
		for _, x := range results {
			msgs = append(msgs, x.Message)
			if !x.OK {
				kind = "error"
			}
		}
		s.setFlash(r, kind, ui.DisplayName(strings.Join(msgs, " ")))
		http.Redirect(w, r, filesHref(res.ID, dir, nil), http.StatusSeeOther)
	}
	refuse := func(status int, name, msg string, err error) {
		s.fileEvent(r, u, res, audit.ActionFileUpload, files.Join(dir, name), -1, err, nil)
		// The body is not read: close rather than drain it.
		w.Header().Set("Connection", "close")
		answer(status, []uploadResult{{Name: name, Message: msg}})
	}
	if res.Options.NoUpload {
		refuse(http.StatusForbidden, q.Get("name"), "Uploads are disabled on "+res.Name+".", errors.New("uploads are disabled on this resource"))
		return
	}
	if files.CheckPath(dir) != nil {
		refuse(http.StatusBadRequest, q.Get("name"), "Choose a folder to upload to.", files.ErrBadPath)
		return
	}
	limit := res.Options.MaxUploadBytes
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	raw := ct != "multipart/form-data"
	if raw {
		// One file, named in the query, its bytes the whole body: the
		// page's script sends files this way, with exact names.
		name := q.Get("name")
		if files.CheckName(name) != nil {
			refuse(http.StatusBadRequest, name, fmt.Sprintf("%q cannot be a file name.", name), files.ErrBadName)
			return
		}
		if limit > 0 && r.ContentLength > limit {
			refuse(http.StatusRequestEntityTooLarge, name, fmt.Sprintf("%s is larger than the %s allowed for uploads to %s; it was not sent.", name, megabytes(limit), res.Name), files.ErrTooLarge)
			return
		}
	}
	fsess, failure := s.openFiles(r.Context(), adm)
	if failure != nil {
		refuse(http.StatusBadGateway, q.Get("name"), failure.Message, errors.New(failure.Message))
		return
	}
	defer fsess.Close()
	replace := q.Get("replace") == "1"
	upload := func(name string, body io.Reader) (uploadResult, error) {
		br := &bodyReader{r: body}
		var n int64
		err := fsess.protect(files.Join(dir, name), false)
		if err == nil {
			n, err = fsess.Upload(dir, name, br, limit, replace)
		}
		details := map[string]string{"gateway": fsess.gateway}
		if replace {
			details["replace"] = "yes"
		}
		x := uploadResult{Name: name, Size: n, OK: err == nil}
		switch {
		case err == nil:
			x.Message = fmt.Sprintf("%s was uploaded (%d bytes).", name, n)
		case errors.Is(err, files.ErrTooLarge):
			x.Message = fmt.Sprintf("%s is larger than the %s allowed for uploads to %s: the upload was stopped and nothing was saved.", name, megabytes(limit), res.Name)
		case errors.Is(err, files.ErrExists):
			x.Message = fmt.Sprintf("%s already exists in %s; choose to replace it, or rename one of them.", name, dir)
		case errors.Is(err, files.ErrBadName):
			x.Message = fmt.Sprintf("%q cannot be a file name.", name)
		case errors.Is(err, files.ErrProtected):
			x.Message = fmt.Sprintf("%s was not uploaded: %s.", name, err)
		case br.err != nil:
			err = fmt.Errorf("interrupted after %d bytes: %w", n, br.err)
			x.Message = fmt.Sprintf("The upload of %s was interrupted; nothing was saved under its name.", name)
		default:
			x.Message = fmt.Sprintf("The target refused to save %s: %s.", name, files.Message(err))
		}
		s.fileEvent(r, u, res, audit.ActionFileUpload, files.Join(dir, name), n, err, details)
		x.Message = ui.DisplayName(x.Message)
		return x, err
	}
	if raw {
		x, err := upload(q.Get("name"), r.Body)
		status := http.StatusOK
		if err != nil {
			status = refusalStatus(err)
		}
		answer(status, []uploadResult{x})
		return
	}
	// A form without script: multipart, streamed part by part. The
	// replace checkbox comes before the files in the form, so in the body.
	mr, err := r.MultipartReader()
	if err != nil {
		answer(http.StatusBadRequest, []uploadResult{{Message: "The upload form was not understood."}})
		return
	}
	var results []uploadResult
	for {
		part, err := mr.NextRawPart()
		if err != nil {
			if err != io.EOF {
				results = append(results, uploadResult{Message: "The upload was interrupted; files not listed as uploaded were not saved."})
			}
			break
		}
		// The name as sent, not FileName()'s base name of it.
		_, params, _ := mime.ParseMediaType(part.Header.Get("Content-Disposition"))
		if part.FormName() == "replace" {
			b, _ := io.ReadAll(io.LimitReader(part, 8))
			replace = string(b) == "on" || string(b) == "1"
			continue
		}
		name := params["filename"]
		if part.FormName() != "files" || name == "" {
			continue
		}
		x, _ := upload(name, part)
		results = append(results, x)
	}
	if len(results) == 0 {
		results = append(results, uploadResult{Message: "Choose one or more files to upload."})
	}
	answer(http.StatusOK, results)
}

// fileForm reads a file action's form: the path it acts on and the
// folder to go back to.
func (s *Server) fileForm(w http.ResponseWriter, r *http.Request) (p, back string, ok bool) {
	if err := r.ParseForm(); err != nil {
		s.serverError(w, r, err)
		return "", "", false
	}
	p, back = r.PostForm.Get("path"), r.PostForm.Get("dir")
	if files.CheckPath(p) != nil || (back != "" && files.CheckPath(back) != nil) {
		s.renderError(w, r, http.StatusBadRequest, "This is not a path on the target: paths start with a slash.")
		return "", "", false
	}
	return p, back, true
}

// fileAction runs one change on the target for a form and goes back to
// the listing with the outcome as a flash message.
func (s *Server) fileAction(w http.ResponseWriter, r *http.Request, action string, run func(*filesSession, string) (string, error)) {
	u, res, adm, ok := s.filesResource(w, r)
	if !ok {
		return
	}
	p, back, ok := s.fileForm(w, r)
	if !ok {
		return
	}
	fsess, failure := s.openFiles(r.Context(), adm)
	var msg string
	var err error
	if failure != nil {
		err = errors.New(failure.Message)
		msg = failure.Message
	} else {
		msg, err = run(fsess, p)
		fsess.Close()
	}
	details := map[string]string{}
	if action == audit.ActionFileRename || action == audit.ActionFileMkdir {
		details["name"] = r.PostForm.Get("name")
	}
	if action == audit.ActionFileChmod {
		details["mode"] = r.PostForm.Get("mode")
	}
	s.fileEvent(r, u, res, action, p, -1, err, details)
	if err != nil {
		if failure == nil {
			msg = msg + ": " + files.Message(err) + "."
		}
		s.setFlash(r, "error", ui.DisplayName(msg))
	} else {
		s.setFlash(r, "success", ui.DisplayName(msg))
	}
	http.Redirect(w, r, filesHref(res.ID, back, nil), http.StatusSeeOther)
}

func (s *Server) fileMkdir(w http.ResponseWriter, r *http.Request) {
	s.fileAction(w, r, audit.ActionFileMkdir, func(f *filesSession, dir string) (string, error) {
		name := r.PostForm.Get("name")
		if err := f.protect(files.Join(dir, name), false); err != nil {
			return fmt.Sprintf("The folder %q was not created", name), err
		}
		if err := f.Mkdir(dir, name); err != nil {
			return fmt.Sprintf("The folder %q could not be created", name), err
		}
		return fmt.Sprintf("The folder %s was created.", name), nil
	})
}

func (s *Server) fileRename(w http.ResponseWriter, r *http.Request) {
	s.fileAction(w, r, audit.ActionFileRename, func(f *filesSession, p string) (string, error) {
		name := r.PostForm.Get("name")
		err := f.protect(p, false)
		if err == nil {
			err = f.protect(files.Join(path.Dir(p), name), false)
		}
		if err != nil {
			return fmt.Sprintf("%s was not renamed", path.Base(p)), err
		}
		if _, err := f.Rename(p, name); err != nil {
			return fmt.Sprintf("%s could not be renamed to %q", path.Base(p), name), err
		}
		return fmt.Sprintf("%s was renamed to %s.", path.Base(p), name), nil
	})
}

// maxRefusalsShown bounds the refusals a bulk delete's message names.
const maxRefusalsShown = 5

func (s *Server) fileDelete(w http.ResponseWriter, r *http.Request) {
	// The form is read (bounded by maxFormBody) to tell one from many.
	if err := r.ParseForm(); err == nil && (len(r.PostForm["path"]) > 1 || r.PostForm.Get("bulk") == "1") {
		s.fileDeleteMany(w, r)
		return
	}
	s.fileAction(w, r, audit.ActionFileDelete, func(f *filesSession, p string) (string, error) {
		if err := f.protect(p, false); err != nil {
			return fmt.Sprintf("%s was not deleted", path.Base(p)), err
		}
		if err := f.Remove(p); err != nil {
			return fmt.Sprintf("%s could not be deleted", path.Base(p)), err
		}
		return fmt.Sprintf("%s was deleted.", path.Base(p)), nil
	})
}

func (s *Server) fileChmod(w http.ResponseWriter, r *http.Request) {
	s.fileAction(w, r, audit.ActionFileChmod, func(f *filesSession, p string) (string, error) {
		mode, err := files.ParseMode(r.PostForm.Get("mode"))
		if err != nil {
			return "The permissions were not changed", err
		}
		if err := f.protect(p, true); err != nil {
			return fmt.Sprintf("The permissions of %s were not changed", path.Base(p)), err
		}
		if err := f.Chmod(p, mode); err != nil {
			return fmt.Sprintf("The permissions of %s could not be changed", path.Base(p)), err
		}
		return fmt.Sprintf("The permissions of %s are now %o.", path.Base(p), mode.Perm()|setBits(mode)), nil
	})
}

// fileDeleteMany deletes the selected entries of one folder, each checked
// and audited on its own, and sums up the outcome in one message.
func (s *Server) fileDeleteMany(w http.ResponseWriter, r *http.Request) {
	u, res, adm, ok := s.filesResource(w, r)
	if !ok {
		return
	}
	dir := r.PostForm.Get("dir")
	names, refusal := selection(dir, r.PostForm["path"])
	if refusal != "" {
		s.renderError(w, r, http.StatusBadRequest, refusal)
		return
	}
	paths := make([]string, len(names))
	for i, name := range names {
		paths[i] = files.Join(dir, name)
	}
	back := filesHref(res.ID, dir, nil)
	fsess, failure := s.openFiles(r.Context(), adm)
	if failure != nil {
		for _, p := range paths {
			s.fileEvent(r, u, res, audit.ActionFileDelete, p, -1, errors.New(failure.Message), failure.Details)
		}
		s.setFlash(r, "error", failure.Message+" Nothing was deleted.")
		http.Redirect(w, r, back, http.StatusSeeOther)
		return
	}
	defer fsess.Close()
	details := map[string]string{"gateway": fsess.gateway, "selected": strconv.Itoa(len(paths))}
	deleted := 0
	var refused []string
	for _, p := range paths {
		err := fsess.protect(p, false)
		if err == nil {
			err = fsess.Remove(p)
		}
		s.fileEvent(r, u, res, audit.ActionFileDelete, p, -1, err, details)
		if err == nil {
			deleted++
			continue
		}
		refused = append(refused, fmt.Sprintf("%s (%s)", path.Base(p), files.Message(err)))
	}
	msg := fmt.Sprintf("%d deleted", deleted)
	kind := "success"
	if len(refused) > 0 {
		kind = "error"
		shown := refused[:min(len(refused), maxRefusalsShown)]
		msg += fmt.Sprintf(", %d refused: %s", len(refused), strings.Join(shown, "; "))
		if more := len(refused) - len(shown); more > 0 {
			msg += fmt.Sprintf("; and %d more (see the audit log)", more)
		}
	}
	s.setFlash(r, kind, ui.DisplayName(msg+"."))
	http.Redirect(w, r, back, http.StatusSeeOther)
}
