package oidc

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// Limits on what a provider sends and how long it may take.
const (
	// maxResponse bounds a discovery document, JWKS, token or userinfo
	// response.
	maxResponse = 256 << 10
	// requestTimeout bounds one request to the provider.
	requestTimeout = 10 * time.Second
)

// errTooLarge is a provider response larger than maxResponse.
var errTooLarge = fmt.Errorf("provider response larger than %d bytes", maxResponse)

// limitTransport cuts every response body at maxResponse bytes with an
// error, so a hostile provider cannot make the portal buffer gigabytes.
type limitTransport struct{ next http.RoundTripper }

func (t limitTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	if resp.ContentLength > maxResponse {
		resp.Body.Close()
		return nil, errTooLarge
	}
	resp.Body = &limitedBody{rc: resp.Body, left: maxResponse}
	return resp, nil
}

type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One more byte means the body is over the limit; EOF means it
		// ended exactly there.
		var one [1]byte
		n, err := b.rc.Read(one[:])
		if n > 0 {
			return 0, errTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }

// newHTTPClient is the client for one provider: its own TLS roots (the
// system's plus the configured bundle), bounded time and responses, and no
// redirects followed (discovery and token answers come from the URLs the
// provider named).
func newHTTPClient(c Config) (*http.Client, error) {
	tr := &http.Transport{
		Proxy:                  http.ProxyFromEnvironment,
		DialContext:            (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		TLSHandshakeTimeout:    5 * time.Second,
		ResponseHeaderTimeout:  requestTimeout,
		MaxResponseHeaderBytes: 64 << 10,
		MaxIdleConnsPerHost:    4,
		IdleConnTimeout:        90 * time.Second,
		ForceAttemptHTTP2:      true,
	}
	if c.CABundle != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM([]byte(c.CABundle)) {
			return nil, errors.New("the CA bundle holds no PEM certificate")
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	tr.TLSClientConfig = c.TLS.Client(tr.TLSClientConfig)
	return &http.Client{
		Transport: limitTransport{tr},
		Timeout:   requestTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}, nil
}
