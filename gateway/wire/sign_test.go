package wire

import (
	"crypto/sha256"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestSignedRequestCoversQueryBodyAndMetadata(t *testing.T) {
	t.Parallel()
	id := newTestIdentity(t)
	now := time.Unix(1_800_000_000, 0)
	body := sha256.Sum256([]byte("recording bytes"))
	sign := func() *http.Request {
		r, _ := http.NewRequest("PUT", "https://portal.test/gateway-api/v1/recordings/S1?offset=0", nil)
		r.Header.Set(HeaderRecording, "meta")
		SignRequest(r, id, "7", now, body)
		return r
	}
	for _, tc := range []struct {
		name string
		edit func(*http.Request)
		want string
	}{
		{"as signed", func(*http.Request) {}, ""},
		{"offset", func(r *http.Request) { r.URL.RawQuery = "offset=9" }, "signature does not match"},
		{"path", func(r *http.Request) { r.URL.Path += "x" }, "signature does not match"},
		{"metadata", func(r *http.Request) { r.Header.Set(HeaderRecording, "other") }, "signature does not match"},
		{"body digest", func(r *http.Request) { r.Header.Set(HeaderBodySHA256, strings.Repeat("0", 64)) }, "signature does not match"},
		{"gateway", func(r *http.Request) { r.Header.Set(HeaderGatewayID, "8") }, "signature does not match"},
		{"no nonce", func(r *http.Request) { r.Header.Del(HeaderNonce) }, "upgrade the gateway"},
		{"long nonce", func(r *http.Request) { r.Header.Set(HeaderNonce, strings.Repeat("n", 65)) }, "malformed nonce"},
		{"old", func(r *http.Request) { r.Header.Set(HeaderTime, "1") }, "off the portal's clock"},
	} {
		r := sign()
		tc.edit(r)
		got, err := VerifyRequest(r, id.PublicKey(), now, NewNonceCache(10))
		switch {
		case tc.want == "" && (err != nil || got != body):
			t.Errorf("%s: %v, digest %x", tc.name, err, got)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	seen := NewNonceCache(10)
	r := sign()
	if _, err := VerifyRequest(r, id.PublicKey(), now, seen); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyRequest(r, id.PublicKey(), now.Add(time.Minute), seen); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay: %v", err)
	}
}

// FuzzVerifyRequest: whatever the headers, verification neither panics
// nor accepts a request the key did not sign.
func FuzzVerifyRequest(f *testing.F) {
	id := newTestIdentity(f)
	now := time.Unix(1_800_000_000, 0)
	r, _ := http.NewRequest("GET", "https://portal.test/gateway-api/v1/config", nil)
	SignRequest(r, id, "7", now, EmptyBody)
	f.Add(r.Header.Get(HeaderTime), r.Header.Get(HeaderNonce), r.Header.Get(HeaderBodySHA256), r.Header.Get(HeaderSignature), "7")
	f.Add("", "", "", "", "")
	f.Add("1800000000", "n", "zz", "!!!", "7\n")
	f.Fuzz(func(t *testing.T, ts, nonce, body, sig, gw string) {
		q, _ := http.NewRequest("GET", "https://portal.test/gateway-api/v1/config", nil)
		q.Header = http.Header{HeaderTime: {ts}, HeaderNonce: {nonce}, HeaderBodySHA256: {body}, HeaderSignature: {sig}, HeaderGatewayID: {gw}}
		_, err := VerifyRequest(q, id.PublicKey(), now, NewNonceCache(4))
		if err == nil && (sig != r.Header.Get(HeaderSignature) || nonce != r.Header.Get(HeaderNonce)) {
			t.Fatalf("accepted headers nobody signed: %v", q.Header)
		}
	})
}
