package httpui

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/a-h/templ"

	"github.com/keyway-dev/keyway/portal/store"
	"github.com/keyway-dev/keyway/web/ui"
)

// flashKey is the scs key of the one-time message shown on the next page.
const flashKey = "flash"

// page returns the shared page data for r.
func (s *Server) page(r *http.Request, title, section string) ui.Page {
	p := ui.Page{Title: title, Section: section}
	if u, ok := currentUser(r); ok {
		p.Viewer = &ui.Viewer{Name: u.Name, DisplayName: u.DisplayName, Role: string(u.Role)}
	}
	if msg := s.Sessions.PopString(r.Context(), flashKey); msg != "" {
		kind, text, _ := strings.Cut(msg, ":")
		p.Flash = ui.Flash{Kind: kind, Message: text}
	}
	return p
}

// setFlash keeps a message for the next page the user sees.
func (s *Server) setFlash(r *http.Request, kind, msg string) {
	s.Sessions.Put(r.Context(), flashKey, kind+":"+msg)
}

// render writes c with status. It renders into a buffer first so a
// template error becomes a clean 500 instead of half a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, c templ.Component) {
	var buf bytes.Buffer
	if err := c.Render(r.Context(), &buf); err != nil {
		s.Logger.ErrorContext(r.Context(), "render page", "path", r.URL.Path, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

var statusTitles = map[int]string{
	http.StatusBadRequest:            "Bad request",
	http.StatusUnauthorized:          "Signed out",
	http.StatusForbidden:             "No access",
	http.StatusNotFound:              "Not found",
	http.StatusRequestEntityTooLarge: "Too large",
	http.StatusInternalServerError:   "Something went wrong",
	http.StatusBadGateway:            "Connection failed",
}

// renderError shows msg on an error page with status.
func (s *Server) renderError(w http.ResponseWriter, r *http.Request, status int, msg string) {
	title := statusTitles[status]
	if title == "" {
		title = http.StatusText(status)
	}
	p := s.page(r, title, "")
	s.render(w, r, status, ui.ErrorPage(p, ui.ErrorView{Status: status, Title: title, Message: msg}))
}

// serverError logs err and shows a generic error page.
func (s *Server) serverError(w http.ResponseWriter, r *http.Request, err error) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		s.renderError(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("The form was larger than %d bytes.", mbe.Limit))
		return
	}
	s.Logger.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	s.renderError(w, r, http.StatusInternalServerError, "The portal could not complete this request. The error was logged for the administrators.")
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	s.renderError(w, r, http.StatusNotFound, "There is no page at this address.")
}

// actionError answers a failed admin action that has no form to re-show.
func (s *Server) actionError(w http.ResponseWriter, r *http.Request, err error, back string) {
	var fe fieldErrors
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.renderError(w, r, http.StatusNotFound, "It no longer exists; someone may have deleted it.")
	case errors.As(err, &fe):
		for _, msg := range fe {
			s.setFlash(r, "error", msg)
			break
		}
		http.Redirect(w, r, back, http.StatusSeeOther)
	default:
		s.serverError(w, r, err)
	}
}

// asFieldErrors returns err's field errors, or nil for other errors.
func asFieldErrors(err error) ui.Errors {
	var fe fieldErrors
	if errors.As(err, &fe) {
		return ui.Errors(fe)
	}
	return nil
}
