package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5"

	"github.com/keyway-dev/keyway/e2e/targets"
	"github.com/keyway-dev/keyway/gateway/wire"
	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/cluster"
	"github.com/keyway-dev/keyway/portal/gateways"
	"github.com/keyway-dev/keyway/portal/store"
)

// portalProcessEnv makes the test binary run `portal` itself (TestMain):
// a replica the tests can kill as a machine's process dies.
const portalProcessEnv = "KEYWAY_TEST_PORTAL_PROCESS"

func TestMain(m *testing.M) {
	if os.Getenv(portalProcessEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// takeoverBound is the design's bound on a health leader's failover.
const takeoverBound = 30 * time.Second

// portalProc is a `portal serve` process.
type portalProc struct {
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan struct{}
	URL  string
	// ID is its cluster replica's id.
	ID string
}

// startPortalProcess runs `portal serve args...` as a process of its own
// and returns it once it listens; it is killed when the test ends.
func startPortalProcess(t *testing.T, args ...string) *portalProc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := &portalProc{log: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(exe, append([]string{"serve"}, args...)...)
	p.cmd.Env = append(os.Environ(), portalProcessEnv+"=1")
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	p.cmd.WaitDelay = time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(p.kill)
	waitForLong(t, "the portal process to listen", func() bool {
		select {
		case <-p.done:
			t.Fatalf("the portal process exited:\n%s", p.log.String())
		default:
		}
		return strings.Contains(p.log.String(), "portal listening")
	})
	l := p.log.String()
	p.URL = regexp.MustCompile(`msg="portal listening" url=(\S+)`).FindStringSubmatch(l)[1]
	p.ID = replicaID(t, l)
	return p
}

// kill ends the process at once, as a machine dies: no shutdown.
func (p *portalProc) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// replicaID is the replica id a portal's log says it joined with.
func replicaID(t *testing.T, log string) string {
	t.Helper()
	m := regexp.MustCompile(`msg="joined the cluster".* replica=(\S+)`).FindStringSubmatch(log)
	if m == nil {
		t.Fatalf("no replica id in the log:\n%s", log)
	}
	return m[1]
}

// replicaEnv is one PostgreSQL and one bucket replicas share, and the
// first replica's data directory with the keys they share.
type replicaEnv struct {
	pg  *targets.Postgres
	s3  *targets.S3
	dir string
}

func newReplicaEnv(t *testing.T) *replicaEnv {
	t.Helper()
	e := &replicaEnv{pg: targets.NewPostgres(t), s3: targets.NewS3(t), dir: t.TempDir()}
	for _, kv := range e.s3.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	return e
}

// args are a replica process's flags, on loopback ports chosen at random.
func (e *replicaEnv) args(dir string) []string {
	return []string{"--data", dir, "--database", e.pg.DSN(), "--listen", "127.0.0.1:0",
		"--gateway-listen", "127.0.0.1:0", "--gateway-rdp-listen", "127.0.0.1:0", "--gateway-vnc-listen", "127.0.0.1:0",
		"--cluster-listen", "127.0.0.1:0", "--recordings", "s3://" + e.s3.Bucket + "/keyway", "--s3-endpoint", e.s3.Endpoint, "--s3-path-style"}
}

// config is an in-process replica's configuration.
func (e *replicaEnv) config(dir string) serveConfig {
	return serveConfig{DataDir: dir, Listen: "127.0.0.1:0", Database: e.pg.DSN(), ClusterListen: "127.0.0.1:0",
		Recordings: "s3://" + e.s3.Bucket + "/keyway", S3Endpoint: e.s3.Endpoint, S3PathStyle: true}
}

// sharedDir is a new data directory with the first replica's shared keys
// and certificate, as the Helm chart mounts them into every replica.
func (e *replicaEnv) sharedDir(t *testing.T) string {
	t.Helper()
	return replicaDataDir(t, e.dir)
}

// replicaDataDir is a new data directory with the shared keys and
// certificate of the replica whose data directory is from, as the Helm
// chart mounts them into every replica.
func replicaDataDir(t *testing.T, from string) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"secrets.key", "portal-identity.pem", filepath.Join("gateway", "identity.pem"), "tls.crt", "tls.key"} {
		raw, err := os.ReadFile(filepath.Join(from, f))
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o700)
		if err := os.WriteFile(filepath.Join(dir, f), raw, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// user adds a user from the command line, on the shared database.
func (e *replicaEnv) user(t *testing.T, name, role, password string) {
	t.Helper()
	if err := run(context.Background(), []string{"users", "add", name, "--role", role, "--password-stdin", "--data", e.dir, "--database", e.pg.DSN()},
		strings.NewReader(password+"\n"), io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
}

// with returns a browser on base carrying b's cookies: the same web
// session, on another replica.
func (b *browser) with(base string) *browser {
	nb := newBrowser(b.t, base)
	from, _ := url.Parse(b.base)
	to, _ := url.Parse(base)
	nb.client.Jar.SetCookies(to, b.client.Jar.Cookies(from))
	return nb
}

// leaderLine is what a replica logs when it takes the lead.
const leaderLine = "this replica leads"

// TestReplicasShareSignInAndHealth: three replicas on one PostgreSQL and
// one bucket. A user signed in on replica A uses replica B with the same
// cookie: B's Recordings and Sessions pages and a terminal through B,
// listed on C. Then the health leader (A, a process of its own) vanishes
// (frozen, its lock connection ended by the server), and another replica
// takes over the gateways' health checks within 30 s; that one is
// stopped as an operator stops it, and the last takes over too. The
// takeover times are logged.
func TestReplicasShareSignInAndHealth(t *testing.T) {
	ctx := context.Background()
	env := newReplicaEnv(t)
	sshd := targets.NewSSHD(t)
	env.user(t, "boss", "admin", "admin-password-5")
	a := startPortalProcess(t, env.args(env.dir)...)
	waitForLong(t, "replica a to lead", func() bool { return strings.Contains(a.log.String(), leaderLine) })
	b, bLog, stopB := startPortalWith(t, env.config(env.sharedDir(t)))
	c, cLog, stopC := startPortalWith(t, env.config(env.sharedDir(t)))
	bID, cID := replicaID(t, bLog.String()), replicaID(t, cLog.String())

	st := b.Store
	boss, err := st.UserByName(ctx, "boss")
	if err != nil {
		t.Fatal(err)
	}
	res, err := st.CreateResource(ctx, store.Resource{Name: "box5", Protocol: "ssh", Host: sshd.Host, Port: sshd.Port, Login: sshd.User},
		&store.Secrets{Password: sshd.Password})
	if err != nil {
		t.Fatal(err)
	}
	st.CreateGrantMode(ctx, res.ID, "user", boss.ID, store.GrantBoth)
	// A remote gateway that is down, for the leader to check: its result
	// is written with the leader's id.
	seg, err := st.CreateSegment(ctx, store.Segment{Name: "down"})
	if err != nil {
		t.Fatal(err)
	}
	downID, err := wire.LoadOrCreateIdentity(filepath.Join(t.TempDir(), "down.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateGateway(ctx, store.Gateway{Name: "down1", SegmentID: seg.ID, Host: "127.0.0.1", SSHPort: 1, RDPPort: 1, VNCPort: 1,
		ManagementPort: 1, PublicKey: downID.PublicKeyString()}); err != nil {
		t.Fatal(err)
	}

	// (a) Signed in on A, the same cookie works on B.
	onA := newBrowser(t, a.URL)
	onA.signIn("boss", "admin-password-5")
	onB := onA.with(b.URL)
	for _, page := range []string{"/recordings", "/sessions"} {
		if code, body := onB.get(page); code != http.StatusOK || !strings.Contains(body, "boss") {
			t.Fatalf("%s on b with a's cookie: %d", page, code)
		}
	}
	// B's embedded gateway row is the one row every replica writes its
	// ports into: wait until B has checked the ports it holds now.
	waitForLong(t, "b's embedded gateway to be available", func() bool {
		for _, g := range b.Pool.Statuses() {
			if g.Embedded {
				return g.State == gateways.StateAvailable
			}
		}
		return false
	})
	ctl, ws := onB.terminal(res.ID)
	if ctl["type"] != "connected" {
		t.Fatalf("terminal through b: %v\n%s", ctl, bLog.String())
	}
	ws.WriteMessage(websocket.BinaryMessage, []byte("echo through-b-$((5*5))\n"))
	ws.SetReadDeadline(time.Now().Add(30 * time.Second))
	readUntil(t, ws, "through-b-25")
	if _, body := onA.with(c.URL).get("/sessions?partial=1"); !strings.Contains(body, "box5") || !strings.Contains(body, "boss") {
		t.Fatalf("replica c does not list the terminal running on b:\n%s", body)
	}
	ws.Close()

	// (b) The leader's process dies: B or C leads within 30 s, and checks
	// the gateways' health.
	db, err := pgx.Connect(ctx, env.pg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	logs := map[string]*syncBuffer{bID: bLog, cID: cLog}
	leading := func(ids ...string) string {
		for _, id := range ids {
			if strings.Contains(logs[id].String(), leaderLine) {
				return id
			}
		}
		return ""
	}
	if id := leading(bID, cID); id != "" {
		t.Fatalf("replica %s leads beside a", id)
	}
	// checks says whether replica id has written a health check since.
	checks := func(id string, since time.Time) bool {
		var n int
		err := db.QueryRow(ctx, `SELECT count(*) FROM cluster_gateway_health WHERE checked_by = $1 AND updated_at > $2`, id, since).Scan(&n)
		return err == nil && n > 0
	}
	// A's machine vanishes: its process freezes (SIGSTOP) and PostgreSQL
	// ends its lock connection, as its keepalives do within 11 s once the
	// machine is gone (TestReplicaKilledMidSession kills a leader's
	// process outright).
	vanished := time.Now()
	if err := a.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	var ended int
	if err := db.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND classid = $1 AND objid = $2`,
		cluster.LeaderLockKey>>32, cluster.LeaderLockKey&0xffffffff).Scan(&ended); err != nil || ended != 1 {
		t.Fatalf("end the leader's lock connection: %d ended, %v", ended, err)
	}
	var next string
	waitForLong(t, "another replica to lead after a vanished", func() bool { next = leading(bID, cID); return next != "" })
	tookOver := time.Since(vanished)
	waitForLong(t, "the new leader's health checks", func() bool { return checks(next, vanished) })
	t.Logf("leader vanished: %s leads after %s, checks health after %s", next, tookOver.Round(time.Millisecond), time.Since(vanished).Round(time.Millisecond))
	if tookOver > takeoverBound {
		t.Errorf("takeover after the leader vanished took %s, over %s", tookOver, takeoverBound)
	}
	a.kill()

	// The new leader is stopped as an operator stops it: the last
	// replica leads.
	stops := map[string]func(){bID: stopB, cID: stopC}
	last := bID
	if next == bID {
		last = cID
	}
	stopped := time.Now()
	stops[next]()
	waitForLong(t, "the last replica to lead after the leader stopped", func() bool { return leading(last) != "" })
	tookOver = time.Since(stopped)
	waitForLong(t, "the last replica's health checks", func() bool { return checks(last, stopped) })
	t.Logf("leader stopped: %s leads after %s", last, tookOver.Round(time.Millisecond))
	if tookOver > takeoverBound {
		t.Errorf("takeover after a stop took %s, over %s", tookOver, takeoverBound)
	}
}

// TestReplicaKilledMidSession: a terminal runs on replica A through a
// remote gateway process that reaches the portal through a load balancer;
// A's process is killed mid-session. The gateway uploads the recording
// to B, complete in the bucket (size and SHA-256 as the gateway sent it,
// played back through B); the user reconnects through B with the same
// cookie; and B ends A's session in the connection log once A's
// heartbeat is past the TTL.
func TestReplicaKilledMidSession(t *testing.T) {
	ctx := context.Background()
	env := newReplicaEnv(t)
	sshd := targets.NewSSHD(t)
	bin := buildGateway(t)
	env.user(t, "boss", "admin", "admin-password-6")
	a := startPortalProcess(t, env.args(env.dir)...)
	waitForLong(t, "replica a to lead", func() bool { return strings.Contains(a.log.String(), leaderLine) })
	b, bLog, _ := startPortalWith(t, env.config(env.sharedDir(t)))
	st := b.Store
	lb := newFailoverProxy(t, hostOf(t, a.URL), hostOf(t, b.URL))

	admin := newBrowser(t, a.URL)
	admin.signIn("boss", "admin-password-6")
	if resp := admin.post("/admin/segments", url.Values{"name": {"far"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("create segment: %d", resp.StatusCode)
	}
	seg, err := st.SegmentByName(ctx, "far")
	if err != nil {
		t.Fatal(err)
	}
	gw := enrolVia(t, admin, bin, strconv.FormatInt(seg.ID, 10), "g1", t.TempDir(), "https://"+lb.addr())
	explain := func() string {
		return "gateway:\n" + gw.log.String() + "\nb:\n" + bLog.String() + "\na:\n" + a.log.String()
	}
	waitForLong(t, "b to see g1 available", func() bool { return stateOf(b, "g1") == gateways.StateAvailable })

	u, _ := st.CreateUser(ctx, store.User{Name: "carol", Role: store.RoleUser}, mustHash(t, "user-password-6"))
	res, err := st.CreateResource(ctx, store.Resource{Name: "far-box", Protocol: "ssh", Host: sshd.Host, Port: sshd.Port, Login: sshd.User, Tags: []string{"far"}},
		&store.Secrets{Password: sshd.Password})
	if err != nil {
		t.Fatal(err)
	}
	st.CreateGrantMode(ctx, res.ID, "user", u.ID, store.GrantBoth)
	carol := newBrowser(t, a.URL)
	carol.signIn("carol", "user-password-6")
	ctl, ws := carol.terminal(res.ID)
	if ctl["type"] != "connected" {
		t.Fatalf("terminal on a: %v\n%s", ctl, explain())
	}
	ws.SetReadDeadline(time.Now().Add(30 * time.Second))
	ws.WriteMessage(websocket.BinaryMessage, []byte("echo before-kill-$((6*7))\n"))
	readUntil(t, ws, "before-kill-42")
	conns, err := st.Connections(ctx, store.ConnectionFilter{User: "carol"})
	if err != nil || len(conns) != 1 || !conns[0].Running() || conns[0].Gateway != "g1" {
		t.Fatalf("carol's connection: %+v %v", conns, err)
	}
	session := conns[0].SessionID

	// A leads the health checks; B takes over.
	if strings.Contains(bLog.String(), leaderLine) {
		t.Fatalf("b leads beside a:\n%s", explain())
	}
	killed := time.Now()
	a.kill()
	waitForLong(t, "b to lead after a was killed", func() bool { return strings.Contains(bLog.String(), leaderLine) })
	if took := time.Since(killed); took > takeoverBound {
		t.Errorf("takeover after a kill took %s, over %s", took, takeoverBound)
	} else {
		t.Logf("leader killed: b leads after %s", took.Round(time.Millisecond))
	}
	ws.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			break // a's end of the terminal is gone
		}
	}

	// The gateway uploads the recording to B (A refuses connections).
	var evs []store.AuditEvent
	waitForLong(t, "the recording uploaded to b", func() bool {
		evs, _ = st.SearchAudit(ctx, store.AuditFilter{Action: audit.ActionRecordingUpload, Outcome: audit.OutcomeSuccess})
		return len(evs) > 0
	})
	rec, err := st.RecordingBySession(ctx, session)
	if err != nil {
		t.Fatalf("recording of %s: %v\n%s", session, err, explain())
	}
	t.Logf("recording of %d bytes stored %s after the kill (incomplete=%v)", rec.Size, time.Since(killed).Round(time.Millisecond), rec.Incomplete)
	keys, err := env.s3.Keys(ctx, "keyway/")
	if err != nil || !slices.Contains(keys, "keyway/"+rec.Path) || slices.ContainsFunc(keys, func(k string) bool { return strings.Contains(k, "incoming/") }) {
		t.Fatalf("bucket holds %v (%v); want keyway/%s and no upload in progress", keys, err, rec.Path)
	}
	onB := admin.with(b.URL)
	code, body := onB.get(fmt.Sprintf("/recordings/%d/file", rec.ID))
	sum := sha256.Sum256([]byte(body))
	if code != http.StatusOK || int64(len(body)) != rec.Size || !strings.EqualFold(hex.EncodeToString(sum[:]), rec.SHA256) || !strings.Contains(body, "before-kill-42") {
		t.Fatalf("recording through b: %d, %d bytes (want %d), sha256 %x (want %s)", code, len(body), rec.Size, sum, rec.SHA256)
	}
	if code, _ := onB.get(fmt.Sprintf("/recordings/%d", rec.ID)); code != http.StatusOK {
		t.Fatalf("player page through b: %d", code)
	}

	// Carol reconnects through B with the cookie she signed in with on A.
	ctl, ws = carol.with(b.URL).terminal(res.ID)
	if ctl["type"] != "connected" {
		t.Fatalf("reconnect through b: %v\n%s", ctl, explain())
	}
	ws.SetReadDeadline(time.Now().Add(30 * time.Second))
	ws.WriteMessage(websocket.BinaryMessage, []byte("echo after-kill-$((7*7))\n"))
	readUntil(t, ws, "after-kill-49")

	// A's session ends in the connection log once B takes A for dead.
	waitForLong(t, "a's session to end in the connection log", func() bool {
		c, err := st.ConnectionByID(ctx, conns[0].ID)
		return err == nil && !c.Running() && c.Reason == store.ReasonInterrupted
	})
	t.Logf("a's session ended in the connection log %s after the kill (TTL %s)", time.Since(killed).Round(time.Millisecond), cluster.ReplicaTTL)
}

func hostOf(t *testing.T, u string) string {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	// The portal's URL says localhost; connect where it listens.
	return net.JoinHostPort("127.0.0.1", p.Port())
}

// failoverProxy is a TCP load balancer: each connection goes to the
// first backend that accepts it.
type failoverProxy struct{ *tcpProxy }

func newFailoverProxy(t *testing.T, backends ...string) *failoverProxy {
	dial := func() (net.Conn, error) {
		var err error
		for _, b := range backends {
			var s net.Conn
			if s, err = net.Dial("tcp", b); err == nil {
				return s, nil
			}
		}
		return nil, err
	}
	return &failoverProxy{newTCPProxy(t, dial, func(c, s net.Conn) { io.Copy(s, c); s.Close() })}
}

func (p *failoverProxy) addr() string { return p.ln.Addr().String() }

// tcpProxy accepts TCP connections on loopback and forwards each to the
// server dial connects to: upstream carries the client's bytes to the
// server, and the server's are copied back. A client whose server cannot
// be reached is closed. The test's cleanup closes the listener and every
// connection and waits for the copies.
type tcpProxy struct {
	ln       net.Listener
	dial     func() (net.Conn, error)
	upstream func(c, s net.Conn)
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn
}

func newTCPProxy(t *testing.T, dial func() (net.Conn, error), upstream func(c, s net.Conn)) *tcpProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, dial: dial, upstream: upstream}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *tcpProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := p.dial()
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		p.wg.Add(2)
		go func() { defer p.wg.Done(); io.Copy(c, s); c.Close() }()
		go func() { defer p.wg.Done(); p.upstream(c, s) }()
	}
}

func (p *tcpProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
