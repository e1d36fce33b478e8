package httpui

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/gateway/wire"
	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/gateways"
	"github.com/keyway-dev/keyway/portal/store"
)

// send does req with the fixture's client and returns status and body.
func (f *fixture) send(req *http.Request) (int, string) {
	f.t.Helper()
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	return resp.StatusCode, readBody(resp)
}

// signed returns a request of g signed over body; edit runs before signing.
func (g *testGateway) signed(method, path string, body []byte, edit func(*http.Request)) *http.Request {
	req, _ := http.NewRequest(method, g.f.srv.URL+path, bytes.NewReader(body))
	if edit != nil {
		edit(req)
	}
	g.sign(req, sha256.Sum256(body))
	return req
}

// resend copies req (headers, signature and all) with body.
func resend(req *http.Request, body []byte) *http.Request {
	c, _ := http.NewRequest(req.Method, req.URL.String(), bytes.NewReader(body))
	c.Header = req.Header.Clone()
	return c
}

// TestGatewayRequestsCannotBeReplayedOrAltered: a gateway's signed request
// is good once, for the body, offset and recording metadata it was signed
// with; requests signed the old way are refused with a word on upgrading.
func TestGatewayRequestsCannotBeReplayedOrAltered(t *testing.T) {
	f := newFixture(t)
	g := f.enrolGateway("gw-a")
	data := castOf(t, "R1", "kw-replay")
	m := recMeta("R1", data)
	g.ran(m)
	hdr, _ := wire.EncodeRecordingMeta(m)
	withMeta := func(h string) func(*http.Request) {
		return func(r *http.Request) { r.Header.Set(wire.HeaderRecording, h) }
	}

	pull := g.signed("GET", "/gateway-api/v1/config", nil, nil)
	if code, body := f.send(resend(pull, nil)); code != 200 {
		t.Fatalf("config pull: %d %s", code, body)
	}
	if code, body := f.send(resend(pull, nil)); code != http.StatusUnauthorized || !strings.Contains(body, "replayed") {
		t.Fatalf("replayed config pull: %d %s", code, body)
	}

	// Signed the way earlier gateways sign: method, path, id and time only.
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	old, _ := http.NewRequest("GET", f.srv.URL+"/gateway-api/v1/config", nil)
	old.Header.Set(wire.HeaderGatewayID, fmt.Sprint(g.gw.ID))
	old.Header.Set(wire.HeaderTime, ts)
	old.Header.Set(wire.HeaderSignature, base64.StdEncoding.EncodeToString(
		ed25519.Sign(g.key, []byte("keyway-gateway-request\nGET\n/gateway-api/v1/config\n"+fmt.Sprint(g.gw.ID)+"\n"+ts))))
	if code, body := f.send(old); code != http.StatusUnauthorized || !strings.Contains(body, "upgrade the gateway") {
		t.Fatalf("old-style signature: %d %s", code, body)
	}

	path := wire.RecordingsPath + "R1?offset=0"
	// The offset is signed: moved, the signature fails.
	moved := g.signed("PUT", path, data, withMeta(hdr))
	moved.URL.RawQuery = "offset=5"
	if code, body := f.send(resend(moved, data[5:])); code != http.StatusUnauthorized || !strings.Contains(body, "signature") {
		t.Fatalf("upload with a changed offset: %d %s", code, body)
	}
	// So is the metadata header.
	forged := m
	forged.User = "admin1"
	forgedHdr, _ := wire.EncodeRecordingMeta(forged)
	swapped := g.signed("PUT", path, data, withMeta(hdr))
	swapped.Header.Set(wire.HeaderRecording, forgedHdr)
	if code, body := f.send(resend(swapped, data)); code != http.StatusUnauthorized || !strings.Contains(body, "signature") {
		t.Fatalf("upload with changed metadata: %d %s", code, body)
	}
	// And the body: one of the same length is refused and nothing kept.
	other := bytes.Clone(data)
	other[len(other)-3] ^= 1
	if code, body := f.send(resend(g.signed("PUT", path, data, withMeta(hdr)), other)); code != http.StatusBadRequest || !strings.Contains(body, "digest") {
		t.Fatalf("upload with another body: %d %s", code, body)
	}
	if code, st := g.request("GET", "R1", 0, nil, nil, 0); code != 200 || st.Size != 0 {
		t.Fatalf("bytes of an altered body were kept: %d %+v", code, st)
	}
	good := g.signed("PUT", path, data, withMeta(hdr))
	if code, body := f.send(resend(good, data)); code != 200 {
		t.Fatalf("upload: %d %s", code, body)
	}
	if code, body := f.send(resend(good, data)); code != http.StatusUnauthorized || !strings.Contains(body, "replayed") {
		t.Fatalf("replayed upload: %d %s", code, body)
	}
	// The index's body is signed too.
	idx := g.signed("PUT", wire.RecordingsPath+"R1"+wire.IndexSuffix, []byte("{}\n"), nil)
	if code, body := f.send(resend(idx, []byte("[]\n"))); code != http.StatusBadRequest || !strings.Contains(body, "digest") {
		t.Fatalf("index with another body: %d %s", code, body)
	}
}

func TestNonceCacheIsBounded(t *testing.T) {
	t.Parallel()
	c := wire.NewNonceCache(3)
	now := time.Unix(1_000_000, 0)
	for _, k := range []string{"a", "b", "c"} {
		if err := c.Add(k, now); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Add("a", now); !errors.Is(err, wire.ErrReplay) {
		t.Fatalf("replay: %v", err)
	}
	if err := c.Add("d", now.Add(time.Minute)); !errors.Is(err, wire.ErrNonceCacheFull) {
		t.Fatalf("full: %v", err)
	}
	// Once the requests are too old to be accepted, their nonces go.
	if err := c.Add("d", now.Add(5*time.Minute)); err != nil || c.Len() != 1 {
		t.Fatalf("after expiry: %v, %d remembered", err, c.Len())
	}
}

// TestRecordingUploadMustMatchItsSession: a gateway uploads recordings only
// of sessions the portal opened through it, with that session's user,
// resource, protocol and times.
func TestRecordingUploadMustMatchItsSession(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a, b := f.enrolGateway("gw-a"), f.enrolGateway("gw-b")
	data := castOf(t, "M1", "kw-match")
	m := recMeta("M1", data)
	a.ran(m)
	for _, tc := range []struct {
		name string
		g    *testGateway
		edit func(*wire.RecordingMeta)
		want string
	}{
		{"never opened", a, func(m *wire.RecordingMeta) { m.SessionID = "M2" }, "opened no session M2 through gateway gw-a"},
		{"another gateway's", b, nil, "opened no session M1 through gateway gw-b"},
		{"another user", a, func(m *wire.RecordingMeta) { m.User = "admin1" }, "user differ"},
		{"another resource", a, func(m *wire.RecordingMeta) { m.Resource = "db" }, "resource differ"},
		{"another protocol", a, func(m *wire.RecordingMeta) { m.Protocol = "vnc" }, "protocol differ"},
		{"started before", a, func(m *wire.RecordingMeta) { m.Start = m.Start.Add(-time.Hour) }, "start differ"},
		{"ended after", a, func(m *wire.RecordingMeta) { m.End = m.End.Add(time.Hour) }, "end differ"},
	} {
		bad := m
		if tc.edit != nil {
			tc.edit(&bad)
		}
		code, st := tc.g.request("PUT", bad.SessionID, 0, &bad, bytes.NewReader(data), bad.Size)
		if code != http.StatusForbidden || !strings.Contains(st.Error, tc.want) {
			t.Errorf("%s: %d %q, want 403 saying %q", tc.name, code, st.Error, tc.want)
		}
	}
	if _, err := f.store.RecordingBySession(ctx, "M1"); err == nil {
		t.Fatal("a mismatching recording was stored")
	}
	evs, _ := f.audit.Search(ctx, store.AuditFilter{Action: audit.ActionRecordingUpload, Outcome: audit.OutcomeFailure})
	if len(evs) == 0 || evs[0].Actor == "" {
		t.Fatalf("refused uploads are not audited: %+v", evs)
	}
	// A clock a minute off is within the skew allowed.
	ok := m
	ok.Start, ok.End = m.Start.Add(time.Minute), m.End.Add(time.Minute)
	if code, st := a.request("PUT", "M1", 0, &ok, bytes.NewReader(data), ok.Size); code != 200 || !st.Stored {
		t.Fatalf("the matching upload: %d %+v", code, st)
	}
	// The embedded gateway's spool is the portal's own: what it recorded
	// before the portal kept sessions still comes in.
	emb, err := f.store.EnsureEmbeddedGateway(ctx, store.Gateway{Host: "127.0.0.1", SSHPort: 7, ManagementPort: 8, PublicKey: a.id.PublicKeyString()})
	if err != nil {
		t.Fatal(err)
	}
	e := &testGateway{f: f, gw: emb, id: a.id}
	if code, _, body := e.renew(); code != http.StatusOK {
		t.Fatalf("first token of the embedded gateway: %d %s", code, body)
	}
	oldData := castOf(t, "M3", "kw-old")
	old := recMeta("M3", oldData)
	if code, st := e.request("PUT", "M3", 0, &old, bytes.NewReader(oldData), old.Size); code != 200 || !st.Stored {
		t.Fatalf("the embedded gateway's earlier recording: %d %+v", code, st)
	}
}

// TestGatewayConfigIsSigned: the config a gateway pulls carries the
// portal's signature, the enrolled gateways' addresses (the only ones a
// relay may reach) and the portal's TLS key digest.
func TestGatewayConfigIsSigned(t *testing.T) {
	f := newFixture(t)
	g := f.enrolGateway("gw-a")
	seg, _ := f.store.SegmentByName(context.Background(), store.DefaultSegment)
	if _, err := f.store.CreateGateway(context.Background(), store.Gateway{Name: "pending", SegmentID: seg.ID, Host: "10.9.9.9", SSHPort: 7993, ManagementPort: 443}); err != nil {
		t.Fatal(err)
	}
	resp, err := f.srv.Client().Do(g.signed("GET", "/gateway-api/v1/config", nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	id := fmt.Sprint(g.gw.ID)
	if err := wire.VerifyConfig(f.portalID.PublicKey(), id, body, resp.Header.Get(wire.HeaderConfigSignature)); err != nil {
		t.Fatalf("config signature: %v (%s)", err, body)
	}
	var c wire.GatewayConfig
	json.Unmarshal(body, &c)
	if strings.Join(c.RelayAddresses, ",") != "127.0.0.1:1" || strings.Join(c.PortalTLSKeys, ",") != strings.Repeat("ab", 32)+","+strings.Repeat("cd", 32) {
		t.Fatalf("config %+v: want the enrolled gateway's address only, and the TLS keys (current, next)", c)
	}
	if wire.VerifyConfig(f.portalID.PublicKey(), "99", body, resp.Header.Get(wire.HeaderConfigSignature)) == nil {
		t.Fatal("a config signed for one gateway verifies for another")
	}
}

// TestSegmentKeepsItsResources: a resource tagged with a segment that has
// no gateway fails rather than going to another segment's gateway; a
// segment that does not serve untagged resources never gets them.
func TestSegmentKeepsItsResources(t *testing.T) {
	f := newFixture(t)
	admin := f.client("admin")
	for _, form := range []url.Values{
		{"name": {"vault"}, "untagged_field": {"1"}}, // checkbox unticked
		{"name": {"office"}, "untagged_field": {"1"}, "serves_untagged": {"on"}},
	} {
		if resp := f.do(admin, "POST", "/admin/segments", form, nil); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("create segment %v: %d %s", form, resp.StatusCode, readBody(resp))
		}
	}
	vault, _ := f.store.SegmentByName(context.Background(), "vault")
	office, _ := f.store.SegmentByName(context.Background(), "office")
	if vault.ServesUntagged || !office.ServesUntagged {
		t.Fatalf("serves untagged: vault %v, office %v", vault.ServesUntagged, office.ServesUntagged)
	}
	page := readBody(f.do(admin, "GET", "/admin/gateways", nil, nil))
	if !strings.Contains(page, `name="serves_untagged"`) || !strings.Contains(page, "Serves untagged resources") {
		t.Fatal("the gateways page has no serves-untagged setting")
	}
	// The pool knows the segment from the store, not from its gateways.
	if _, err := f.pool.Select([]string{"web", "Vault"}); !errors.Is(err, gateways.ErrNoGateway) || !strings.Contains(err.Error(), "segment Vault") {
		t.Fatalf("resource of a segment without gateways: %v", err)
	}
}
