package samltest

import (
	"crypto/tls"
	"net/http"
)

func insecureTransport() http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} // loopback test portal
	return t
}
