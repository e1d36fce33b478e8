package opserver

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// maxHops bounds the redirects Login follows.
const maxHops = 10

// Login plays a browser at the provider for tests and benchmarks: from
// the authorization URL a relying party sent it to, it signs in as
// username with password and returns the URL the provider then sends the
// browser to (the relying party's redirect URI with code and state),
// without requesting it. c must not follow redirects itself.
func Login(c *http.Client, authURL, username, password string) (*url.URL, error) {
	u, err := url.Parse(authURL)
	if err != nil {
		return nil, err
	}
	origin := u.Scheme + "://" + u.Host
	var form url.Values
	for range maxHops {
		var resp *http.Response
		if form != nil {
			resp, err = c.PostForm(u.String(), form)
			form = nil
		} else {
			resp, err = c.Get(u.String())
		}
		if err != nil {
			return nil, err
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		switch {
		case resp.StatusCode >= 300 && resp.StatusCode < 400:
			next, err := u.Parse(resp.Header.Get("Location"))
			if err != nil {
				return nil, err
			}
			if next.Scheme+"://"+next.Host != origin {
				return next, nil // back to the relying party
			}
			u = next
		case resp.StatusCode == http.StatusOK && u.Path == "/login":
			form = url.Values{"id": {u.Query().Get("authRequestID")}, "username": {username}, "password": {password}}
			u, _ = u.Parse("/login")
		default:
			return nil, fmt.Errorf("provider answered %s at %s: %s", resp.Status, u.Path, strings.TrimSpace(string(body)))
		}
	}
	return nil, errors.New("too many redirects at the provider")
}
