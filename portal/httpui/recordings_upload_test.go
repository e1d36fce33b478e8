package httpui

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/e2e/targets"
	"github.com/keyway-dev/keyway/gateway/guac"
	"github.com/keyway-dev/keyway/gateway/wire"
	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/store"
	"github.com/keyway-dev/keyway/recordings/asciicast"
	"github.com/keyway-dev/keyway/recordings/guacrec"
	"github.com/keyway-dev/keyway/recordings/storage"
)

// testGateway is a gateway enrolled in the fixture's store, which signs
// requests with its key.
type testGateway struct {
	f   *fixture
	gw  store.Gateway
	id  *wire.Identity
	key ed25519.PrivateKey
	// token is the gateway's access token, got at enrolment.
	token string
}

// sign adds the gateway's access token and signature to req.
func (g *testGateway) sign(req *http.Request, digest [sha256.Size]byte) {
	if g.token != "" {
		req.Header.Set(wire.HeaderGatewayToken, g.token)
	}
	wire.SignRequest(req, g.id, fmt.Sprint(g.gw.ID), time.Now(), digest)
}

// renew asks the portal for a new access token, as the gateway does.
func (g *testGateway) renew() (int, wire.TokenGrant, string) {
	g.f.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, g.f.srv.URL+wire.TokenPath, nil)
	g.sign(req, wire.EmptyBody)
	resp, err := g.f.srv.Client().Do(req)
	if err != nil {
		g.f.t.Fatal(err)
	}
	body := readBody(resp)
	var grant wire.TokenGrant
	json.Unmarshal([]byte(body), &grant)
	if resp.StatusCode == http.StatusOK {
		g.token = grant.Token
	}
	return resp.StatusCode, grant, body
}

func (f *fixture) enrolGateway(name string) *testGateway {
	f.t.Helper()
	_, k, _ := ed25519.GenerateKey(rand.Reader)
	id, _ := wire.NewIdentity(k)
	seg, err := f.store.SegmentByName(context.Background(), store.DefaultSegment)
	if err != nil {
		f.t.Fatal(err)
	}
	gw, err := f.store.CreateGateway(context.Background(), store.Gateway{Name: name, SegmentID: seg.ID, Host: "127.0.0.1", SSHPort: 1, ManagementPort: 2, PublicKey: id.PublicKeyString()})
	if err != nil {
		f.t.Fatal(err)
	}
	g := &testGateway{f: f, gw: gw, id: id, key: k}
	if code, _, body := g.renew(); code != http.StatusOK {
		f.t.Fatalf("first token of %s: %d %s", name, code, body)
	}
	return g
}

// castOf returns a small terminal recording whose output says text.
func castOf(t *testing.T, session, text string) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := asciicast.NewWriter(&b, asciicast.Config{Header: asciicast.Header{Width: 80, Height: 24,
		Keyway: &asciicast.Meta{SessionID: session, User: "user1", Resource: "web"}}})
	if err != nil {
		t.Fatal(err)
	}
	w.Output([]byte("$ echo " + text + "\r\n\x1b[1m" + text + "\x1b[0m\r\n"))
	w.Resize(100, 30)
	w.Close()
	return b.Bytes()
}

func recMeta(session string, data []byte) wire.RecordingMeta {
	sum := sha256.Sum256(data)
	start := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	return wire.RecordingMeta{SessionID: session, User: "user1", Resource: "web", Protocol: "ssh", ClientAddr: "192.0.2.7",
		Format: "asciicast", Start: start, End: start.Add(time.Minute), Complete: true, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}
}

// request sends a signed recording request; body may be shorter than the
// declared length, as a connection that broke.
func (g *testGateway) request(method, session string, offset int64, m *wire.RecordingMeta, body io.Reader, length int64) (int, wire.RecordingStatus) {
	g.f.t.Helper()
	url := g.f.srv.URL + wire.RecordingsPath + session
	if method == http.MethodPut {
		url += fmt.Sprintf("?offset=%d", offset)
	}
	req, _ := http.NewRequest(method, url, body)
	if m != nil {
		h, _ := wire.EncodeRecordingMeta(*m)
		req.Header.Set(wire.HeaderRecording, h)
	}
	digest := wire.EmptyBody
	if body != nil {
		b, _ := io.ReadAll(body)
		digest = sha256.Sum256(b)
		req.Body = io.NopCloser(bytes.NewReader(b))
		req.ContentLength = length
	}
	g.sign(req, digest)
	resp, err := g.f.srv.Client().Do(req)
	if err != nil {
		return 0, wire.RecordingStatus{Error: err.Error()}
	}
	defer resp.Body.Close()
	var st wire.RecordingStatus
	json.NewDecoder(resp.Body).Decode(&st)
	return resp.StatusCode, st
}

// ran records that the portal opened session m.SessionID through g, as
// the session's start does.
func (g *testGateway) ran(m wire.RecordingMeta) {
	g.f.t.Helper()
	if err := g.f.store.AddGatewaySession(context.Background(), store.GatewaySession{SessionID: m.SessionID, GatewayID: g.gw.ID,
		User: m.User, Resource: m.Resource, Protocol: m.Protocol, StartedAt: m.Start.Add(-time.Second), OpenedAt: m.Start.Add(time.Second)}); err != nil {
		g.f.t.Fatal(err)
	}
	if err := g.f.store.EndGatewaySession(context.Background(), m.SessionID, m.End.Add(time.Second)); err != nil {
		g.f.t.Fatal(err)
	}
}

// brokenUpload sends a PUT announcing the whole recording (data), then
// only part of it before the connection drops, as a gateway losing its
// link does.
func (g *testGateway) brokenUpload(session string, m wire.RecordingMeta, data []byte, part int) {
	g.f.t.Helper()
	req, _ := http.NewRequest("PUT", g.f.srv.URL+wire.RecordingsPath+session+"?offset=0", nil)
	h, _ := wire.EncodeRecordingMeta(m)
	req.Header.Set(wire.HeaderRecording, h)
	g.sign(req, sha256.Sum256(data))
	c, err := tls.Dial("tcp", g.f.srv.Listener.Addr().String(), &tls.Config{InsecureSkipVerify: true}) // the test server's own certificate
	if err != nil {
		g.f.t.Fatal(err)
	}
	var head bytes.Buffer
	fmt.Fprintf(&head, "PUT %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n", req.URL.RequestURI(), req.URL.Host, m.Size)
	req.Header.Write(&head)
	head.WriteString("\r\n")
	c.Write(append(head.Bytes(), data[:part]...))
	// The portal has everything sent once it answers the next request on
	// its own connection; closing mid-body drops this one.
	c.Close()
}

// TestRecordingUploadResumesAndVerifies runs on the directory and on an
// S3 bucket: an upload broken mid-way resumes where it stopped, the
// stored recording plays back, and asking again confirms it.
func TestRecordingUploadResumesAndVerifies(t *testing.T) {
	for _, be := range recordingBackends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			testRecordingUploadResumesAndVerifies(t, newFixtureOn(t, be.open, fakeVideo))
		})
	}
}

func testRecordingUploadResumesAndVerifies(t *testing.T, f *fixture) {
	ctx := context.Background()
	g := f.enrolGateway("gw-a")
	data := castOf(t, "S1", "kw-upload-ok")
	m := recMeta("S1", data)

	if code, st := g.request("GET", "S1", 0, nil, nil, 0); code != 200 || st.Size != 0 || st.Stored {
		t.Fatalf("status of an unknown recording: %d %+v", code, st)
	}
	// The first attempt breaks after 40 bytes; the portal keeps them.
	half := int64(40)
	g.ran(m)
	g.brokenUpload("S1", m, data, int(half))
	// The portal notices the drop on its own time: wait for it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, st := g.request("GET", "S1", 0, nil, nil, 0)
		if code == 200 && st.Size == half {
			// and the broken upload's handler has let go of the recording
			if unlock, err := f.recordings.Lock("S1"); err == nil {
				unlock()
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("status after a broken upload: %d %+v, want %d bytes", code, st, half)
		}
		<-time.After(20 * time.Millisecond)
	}
	// An upload past what the portal holds is refused with what it holds.
	if code, st := g.request("PUT", "S1", half+5, &m, bytes.NewReader(data[half+5:]), m.Size-half-5); code != http.StatusConflict || st.Size != half {
		t.Fatalf("upload with a gap: %d %+v", code, st)
	}
	code, st := g.request("PUT", "S1", half, &m, bytes.NewReader(data[half:]), m.Size-half)
	if code != 200 || !st.Stored || st.SHA256 != m.SHA256 {
		t.Fatalf("resumed upload: %d %+v", code, st)
	}
	rec, err := f.store.RecordingBySession(ctx, "S1")
	if err != nil || rec.Gateway != "gw-a" || rec.Size != m.Size || rec.Incomplete || rec.ClientAddr != "192.0.2.7" || !rec.Start.Equal(m.Start) {
		t.Fatalf("stored %+v, %v", rec, err)
	}
	if hits, _ := f.store.SearchRecordings(ctx, store.RecordingFilter{Text: "kw-upload-ok"}); len(hits) != 1 {
		t.Fatalf("the recording's text is not searchable: %d hits", len(hits))
	}
	file, err := f.recordings.Open(context.Background(), rec.Path)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(file)
	file.Close()
	if !bytes.Equal(got, data) || !strings.HasPrefix(rec.Path, "2026/03/04/") {
		t.Fatalf("stored file at %s differs from the upload", rec.Path)
	}
	// Asked again (the gateway missed the answer), the portal confirms it
	// without storing it twice.
	if code, st := g.request("GET", "S1", 0, nil, nil, 0); code != 200 || !st.Stored || st.Size != m.Size {
		t.Fatalf("status of a stored recording: %d %+v", code, st)
	}
	if code, st := g.request("PUT", "S1", m.Size, &m, bytes.NewReader(nil), 0); code != 200 || st.SHA256 != m.SHA256 {
		t.Fatalf("confirming again: %d %+v", code, st)
	}
	evs, _ := f.audit.Search(ctx, store.AuditFilter{Action: audit.ActionRecordingUpload})
	if len(evs) != 1 || evs[0].Actor != "gateway:gw-a" || evs[0].Details["resumed_at"] != "40" {
		t.Fatalf("upload audit events: %+v", evs)
	}
	// Another gateway cannot claim the session: it did not run it.
	other := f.enrolGateway("gw-b")
	if code, _ := other.request("PUT", "S1", 0, &m, bytes.NewReader(data), m.Size); code != http.StatusForbidden {
		t.Fatalf("another gateway's upload of a stored session: %d", code)
	}
}

func TestRecordingChecksumMismatchRejected(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	g := f.enrolGateway("gw-a")
	data := castOf(t, "S2", "kw-tampered")
	m := recMeta("S2", data)
	g.ran(m)
	bad := bytes.Clone(data)
	bad[len(bad)-5] ^= 1 // what arrives differs from what the gateway hashed
	code, st := g.request("PUT", "S2", 0, &m, bytes.NewReader(bad), m.Size)
	sum := sha256.Sum256(bad)
	if code != http.StatusUnprocessableEntity || st.SHA256 != hex.EncodeToString(sum[:]) || st.Stored {
		t.Fatalf("mismatching upload: %d %+v", code, st)
	}
	if _, err := f.store.RecordingBySession(ctx, "S2"); err == nil {
		t.Fatal("a recording with a wrong checksum was stored")
	}
	if code, st := g.request("GET", "S2", 0, nil, nil, 0); code != 200 || st.Size != 0 {
		t.Fatalf("the refused bytes were kept for resuming: %d %+v", code, st)
	}
	evs, _ := f.audit.Search(ctx, store.AuditFilter{Action: audit.ActionRecordingUpload, Outcome: audit.OutcomeFailure})
	if len(evs) != 1 {
		t.Fatalf("a refused upload is not audited: %+v", evs)
	}
	// Sent whole and right, it is stored.
	if code, st := g.request("PUT", "S2", 0, &m, bytes.NewReader(data), m.Size); code != 200 || st.SHA256 != m.SHA256 {
		t.Fatalf("correct upload after a mismatch: %d %+v", code, st)
	}
}

func TestRecordingUploadRefusals(t *testing.T) {
	f := newFixture(t)
	g := f.enrolGateway("gw-a")
	data := castOf(t, "S3", "x")
	m := recMeta("S3", data)
	g.ran(m)

	// A gateway unknown to the portal, or whose key was revoked.
	_, k, _ := ed25519.GenerateKey(rand.Reader)
	stranger, _ := wire.NewIdentity(k)
	impostor := &testGateway{f: f, gw: g.gw, id: stranger}
	if code, _ := impostor.request("PUT", "S3", 0, &m, bytes.NewReader(data), m.Size); code != http.StatusUnauthorized {
		t.Fatalf("upload signed with another key: %d", code)
	}
	ghost := &testGateway{f: f, gw: store.Gateway{ID: 9999}, id: g.id}
	if code, _ := ghost.request("GET", "S3", 0, nil, nil, 0); code != http.StatusUnauthorized {
		t.Fatalf("status for an unknown gateway: %d", code)
	}
	if err := f.store.SetGatewayKey(context.Background(), g.gw.ID, ""); err != nil {
		t.Fatal(err)
	}
	if code, _ := g.request("PUT", "S3", 0, &m, bytes.NewReader(data), m.Size); code != http.StatusUnauthorized {
		t.Fatalf("upload by a revoked gateway: %d", code)
	}
	f.store.SetGatewayKey(context.Background(), g.gw.ID, g.id.PublicKeyString())

	for name, edit := range map[string]func(*wire.RecordingMeta){
		"other session": func(m *wire.RecordingMeta) { m.SessionID = "S4" },
		"no checksum":   func(m *wire.RecordingMeta) { m.SHA256 = "" },
		"no user":       func(m *wire.RecordingMeta) { m.User = "" },
		"end first":     func(m *wire.RecordingMeta) { m.End = m.Start.Add(-time.Second) },
		"too large":     func(m *wire.RecordingMeta) { m.Size = maxRecordingUpload + 1 },
	} {
		bad := m
		edit(&bad)
		if code, _ := g.request("PUT", "S3", 0, &bad, bytes.NewReader(data), m.Size); code != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", name, code)
		}
	}
	if code, _ := g.request("PUT", "..%2Fetc", 0, &m, bytes.NewReader(data), m.Size); code != http.StatusBadRequest && code != http.StatusNotFound {
		t.Errorf("path traversal in the session: %d", code)
	}
	video := m
	video.Format = "mp4"
	if code, _ := g.request("PUT", "S3", 0, &video, bytes.NewReader(data), m.Size); code != http.StatusUnsupportedMediaType {
		t.Errorf("a format the portal does not know: %d, want 415", code)
	}
	// More bytes than announced are refused and not kept.
	if code, _ := g.request("PUT", "S3", 0, &m, bytes.NewReader(append(bytes.Clone(data), "extra"...)), m.Size+5); code == 200 {
		t.Error("an upload over its announced size was confirmed")
	}
}

// guacOf returns a desktop recording of frames frames, one a second, with
// a key frame every third, and its index.
func guacOf(t *testing.T, frames int) (rec, index []byte) {
	t.Helper()
	var r, ix bytes.Buffer
	w, err := guacrec.NewWriter(&r, &ix)
	if err != nil {
		t.Fatal(err)
	}
	const t0 = 1772600767000
	for i := range frames {
		if i > 0 && i%3 == 0 {
			w.KeyFrame()
			w.Write(guac.New("size", "0", "64", "48").AppendTo(nil))
		}
		w.Write(guac.New("rect", "0", strconv.Itoa(i), "0", "1", "1").AppendTo(nil))
		w.Write(guac.New("sync", strconv.Itoa(t0+1000*i)).AppendTo(nil))
	}
	return r.Bytes(), ix.Bytes()
}

// TestDesktopRecordingUpload stores a desktop recording with its index
// and serves it from each key frame for the player, with its timeline.
func TestDesktopRecordingUpload(t *testing.T) {
	for _, be := range recordingBackends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			testDesktopRecordingUpload(t, newFixtureOn(t, be.open, fakeVideo))
		})
	}
}

func testDesktopRecordingUpload(t *testing.T, f *fixture) {
	g := f.enrolGateway("gw-a")
	data, index := guacOf(t, 10)
	m := recMeta("D1", data)
	m.Format, m.Protocol = "guac", "vnc"
	m.Start = time.UnixMilli(1772600767000 - 500)
	m.End = m.Start.Add(5 * time.Second) // before the last frame: the frames' times count
	g.ran(m)

	put := func(session string, body []byte) int {
		req, _ := http.NewRequest("PUT", f.srv.URL+wire.RecordingsPath+session+wire.IndexSuffix, bytes.NewReader(body))
		g.sign(req, sha256.Sum256(body))
		resp, err := f.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := put("D1", index); code != 200 {
		t.Fatalf("index upload: %d", code)
	}
	if code, st := g.request("PUT", "D1", 0, &m, bytes.NewReader(data), m.Size); code != 200 || !st.Stored {
		t.Fatalf("upload: %d %+v", code, st)
	}
	rec, err := f.store.RecordingBySession(context.Background(), "D1")
	if err != nil || !strings.HasSuffix(rec.Path, ".guac") || rec.Format != "guac" {
		t.Fatalf("stored %+v, %v", rec, err)
	}
	ix, err := f.recordings.Index(context.Background(), rec.Path)
	if err != nil || len(ix) != 3 {
		t.Fatalf("stored index %+v, %v", ix, err)
	}

	c := f.client("auditor")
	base := fmt.Sprintf("/recordings/%d", rec.ID)
	resp := f.do(c, "GET", base+"/keyframes", nil, nil)
	var v keyFramesView
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != 200 {
		t.Fatalf("keyframes: %d %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	if v.DurationMS != 9000 || fmt.Sprint(v.KeyFrames) != "[0 3000 6000 9000]" {
		t.Fatalf("timeline %+v", v)
	}
	for _, tc := range []struct {
		query string
		code  int
		from  int64 // offset in the recording
		to    int64 // 0: its end
	}{
		{"", 200, 0, 0},
		{"?keyframe=0", 200, 0, 0},
		{"?keyframe=1", 200, ix[0].Offset, 0},
		{"?keyframe=3", 200, ix[2].Offset, 0},
		{"?keyframe=0&until=2", 200, 0, ix[1].Offset},
		{"?keyframe=1&until=3", 200, ix[0].Offset, ix[2].Offset},
		{"?keyframe=4", 404, 0, 0},
		{"?keyframe=1&until=4", 404, 0, 0},
		{"?keyframe=2&until=2", 400, 0, 0},
		{"?keyframe=-1", 400, 0, 0},
		{"?keyframe=x", 400, 0, 0},
	} {
		if tc.to == 0 {
			tc.to = int64(len(data))
		}
		resp := f.do(c, "GET", base+"/file"+tc.query, nil, nil)
		body := readBody(resp)
		if resp.StatusCode != tc.code {
			t.Errorf("file%s: %d, want %d", tc.query, resp.StatusCode, tc.code)
			continue
		}
		if tc.code == 200 && body != string(data[tc.from:tc.to]) {
			t.Errorf("file%s: %d bytes, want the recording from byte %d to %d", tc.query, len(body), tc.from, tc.to)
		}
	}
	// ?at: the portal draws the frames from the key frame to that time and
	// sends one frame of the screen then (timed then), then the frames
	// after it.
	frame5 := int64(bytes.Index(data, []byte("4.rect,1.0,1.5,")))
	for _, tc := range []struct {
		query string
		code  int
		head  string // the start of the body
		tail  []byte // the end of the body
	}{
		{"?keyframe=1&until=2&at=4500", 200, "4.size,1.0,2.64,2.48;", append([]byte("4.sync,13.1772600771500;"), data[frame5:ix[1].Offset]...)},
		{"?keyframe=1&at=4500", 200, "4.size,1.0,2.64,2.48;", data[frame5:]},
		// At the key frame's own time, or before it: the key frame on.
		{"?keyframe=1&at=3000", 200, string(data[ix[0].Offset : ix[0].Offset+10]), data[ix[0].Offset:]},
		{"?keyframe=1&at=1000", 200, string(data[ix[0].Offset : ix[0].Offset+10]), data[ix[0].Offset:]},
		{"?keyframe=1&at=x", 400, "", nil},
		{"?keyframe=1&at=-5", 400, "", nil},
	} {
		resp := f.do(c, "GET", base+"/file"+tc.query, nil, nil)
		body := readBody(resp)
		if resp.StatusCode != tc.code {
			t.Errorf("file%s: %d, want %d", tc.query, resp.StatusCode, tc.code)
			continue
		}
		if tc.code != 200 {
			continue
		}
		if !strings.HasPrefix(body, tc.head) || !strings.HasSuffix(body, string(tc.tail)) || resp.ContentLength != int64(len(body)) {
			t.Errorf("file%s: %d bytes (Content-Length %d): %.80q…%q", tc.query, len(body), resp.ContentLength, body, body[max(0, len(body)-60):])
		}
	}
	if resp := f.do(f.client("user"), "GET", base+"/keyframes", nil, nil); resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusNotFound {
		t.Errorf("keyframes for a plain user: %d", resp.StatusCode)
	}

	// Without its index a desktop recording is still stored, and plays
	// from its start only.
	data2, _ := guacOf(t, 4)
	m2 := recMeta("D2", data2)
	m2.Format, m2.Protocol = "guac", "rdp"
	m2.Start = time.UnixMilli(1772600767000 - 500)
	m2.End = m2.Start.Add(20 * time.Second) // a still screen after the last frame
	g.ran(m2)
	if code, st := g.request("PUT", "D2", 0, &m2, bytes.NewReader(data2), m2.Size); code != 200 || !st.Stored {
		t.Fatalf("upload without index: %d %+v", code, st)
	}
	rec2, _ := f.store.RecordingBySession(context.Background(), "D2")
	resp = f.do(c, "GET", fmt.Sprintf("/recordings/%d/keyframes", rec2.ID), nil, nil)
	if body := readBody(resp); !strings.Contains(body, `"keyframes":[0]`) || !strings.Contains(body, `"duration_ms":19500`) {
		t.Errorf("timeline without index: %s", body)
	}
}

// TestDesktopSeekInS3 stores a long desktop recording in an S3 bucket
// through the gateway upload, then seeks to its last key frame as the
// player does, counting the bytes the portal fetches from the server:
// the recording from the key frame on and the index, not the whole
// object.
func TestDesktopSeekInS3(t *testing.T) {
	t.Parallel()
	var counted targets.ByteCounter
	f := newFixtureOn(t, s3Recordings(&counted), fakeVideo)
	g := f.enrolGateway("gw-a")

	// 2,000 frames of about 4 KiB, a key frame every 100: 8 MiB.
	var r, idx bytes.Buffer
	w, err := guacrec.NewWriter(&r, &idx)
	if err != nil {
		t.Fatal(err)
	}
	const t0 = 1772600767000
	payload := strings.Repeat("QUJD", 1000)
	for i := range 2000 {
		if i > 0 && i%100 == 0 {
			w.KeyFrame()
			w.Write(guac.New("size", "0", "64", "48").AppendTo(nil))
		}
		w.Write(guac.New("blob", "1", payload).AppendTo(nil))
		w.Write(guac.New("sync", strconv.Itoa(t0+100*i)).AppendTo(nil))
	}
	data := r.Bytes()
	m := recMeta("LONG1", data)
	m.Format, m.Protocol = "guac", "vnc"
	m.Start = time.UnixMilli(t0 - 500)
	m.End = time.UnixMilli(t0 + 200_000)
	g.ran(m)
	req, _ := http.NewRequest("PUT", f.srv.URL+wire.RecordingsPath+"LONG1"+wire.IndexSuffix, bytes.NewReader(idx.Bytes()))
	g.sign(req, sha256.Sum256(idx.Bytes()))
	resp, err := f.srv.Client().Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("index upload: %v %v", resp, err)
	}
	resp.Body.Close()
	if code, st := g.request("PUT", "LONG1", 0, &m, bytes.NewReader(data), m.Size); code != 200 || !st.Stored {
		t.Fatalf("upload: %d %+v", code, st)
	}
	rec, err := f.store.RecordingBySession(context.Background(), "LONG1")
	if err != nil {
		t.Fatal(err)
	}
	ix, err := f.recordings.Index(context.Background(), rec.Path)
	if err != nil || len(ix) != 19 {
		t.Fatalf("index: %d key frames, %v", len(ix), err)
	}

	c := f.client("auditor")
	base := fmt.Sprintf("/recordings/%d", rec.ID)
	for _, tc := range []struct {
		query string
		want  []byte
	}{
		{"/file?keyframe=19", data[ix[18].Offset:]},
		{"/file?keyframe=10&until=11", data[ix[9].Offset:ix[10].Offset]},
	} {
		counted.Reset()
		body := readBody(f.do(c, "GET", base+tc.query, nil, nil))
		if body != string(tc.want) {
			t.Fatalf("%s: %d bytes, want %d", tc.query, len(body), len(tc.want))
		}
		// The key frame on, the index, and the first window of the
		// recording for its first frame's time: far less than the whole.
		got := counted.Bytes()
		t.Logf("%s: %d bytes sent, %d fetched from S3, of %d", tc.query, len(tc.want), got, len(data))
		if got > int64(len(tc.want))+(1<<20) || got > int64(len(data))/4 {
			t.Errorf("%s (%d bytes) fetched %d bytes of the %d-byte recording from S3", tc.query, len(tc.want), got, len(data))
		}
	}
	counted.Reset()
	if resp := f.do(c, "GET", base+"/keyframes", nil, nil); resp.StatusCode != 200 {
		t.Fatalf("keyframes: %d", resp.StatusCode)
	} else {
		readBody(resp)
	}
	got := counted.Bytes()
	t.Logf("keyframes: %d bytes fetched from S3", got)
	if got > int64(len(data))/4 {
		t.Errorf("the timeline fetched %d bytes of the %d-byte recording", got, len(data))
	}
}

// lockFailing is a recording store whose Lock fails with err while set.
type lockFailing struct {
	storage.Store
	err atomic.Pointer[error]
}

func (l *lockFailing) Lock(key string) (func(), error) {
	if err := l.err.Load(); err != nil {
		return nil, *err
	}
	return l.Store.Lock(key)
}

// TestRecordingUploadLockAnswers: an upload whose lock another upload
// holds (here or on another replica) is answered 409, one whose lock
// cannot be asked for (the cluster's database is out of reach) 503, both
// retried by the gateway; neither keeps a byte. Then the upload goes
// through.
func TestRecordingUploadLockAnswers(t *testing.T) {
	var recs *lockFailing
	f := newFixtureOn(t, func(t *testing.T, dir string) storage.Store {
		recs = &lockFailing{Store: dirRecordings(t, dir)}
		return recs
	}, fakeVideo)
	g := f.enrolGateway("gw-a")
	data := castOf(t, "S7", "kw-lock")
	m := recMeta("S7", data)
	g.ran(m)
	for _, tc := range []struct {
		err  error
		code int
	}{
		{storage.ErrBusy, http.StatusConflict},
		{fmt.Errorf("cluster: take the recording's upload lock of S7: %w", errors.New("connection refused")), http.StatusServiceUnavailable},
	} {
		recs.err.Store(&tc.err)
		if code, st := g.request("PUT", "S7", 0, &m, bytes.NewReader(data), m.Size); code != tc.code || st.Error == "" {
			t.Errorf("lock error %v: %d %+v, want %d", tc.err, code, st, tc.code)
		}
		if held, _ := recs.PartSize(context.Background(), "S7"); held != 0 {
			t.Errorf("lock error %v: %d bytes kept", tc.err, held)
		}
	}
	recs.err.Store(nil)
	if code, st := g.request("PUT", "S7", 0, &m, bytes.NewReader(data), m.Size); code != http.StatusOK || !st.Stored {
		t.Fatalf("upload once the lock is free: %d %+v", code, st)
	}
}
