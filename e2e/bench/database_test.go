package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/keyway-dev/keyway/e2e/targets"
	"github.com/keyway-dev/keyway/portal/auth"
	"github.com/keyway-dev/keyway/portal/store"
)

// benchPortal is a bin/portal process (demo or serve) the benchmark
// started and stops.
type benchPortal struct {
	cmd    *exec.Cmd
	log    *lockedBuffer
	exited chan struct{}
	// URL is where it serves; pprof its Go profiles.
	URL   string
	pprof string
}

// Bounds on a portal process's start and stop.
const (
	portalStartTimeout = 90 * time.Second
	portalStopTimeout  = 60 * time.Second
)

// startBenchPortal runs `bin/portal mode --data dir args...` on loopback
// ports chosen at random, with Go profiles on a free loopback port, and
// returns once it serves: for demo when it wrote demo.json, for serve when
// it logged "portal listening". It is stopped when b ends, if not before.
func startBenchPortal(b *testing.B, mode, dir string, args ...string) *benchPortal {
	b.Helper()
	bin, err := filepath.Abs(filepath.Join("..", "..", "bin", "portal"))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		b.Fatalf("%s: build it first with make build", bin)
	}
	pprofAddr := "127.0.0.1:" + strconv.Itoa(freePorts(b, 1)[0])
	all := append([]string{mode, "--data", dir, "--listen", "127.0.0.1:0", "--gateway-listen", "127.0.0.1:0",
		"--gateway-rdp-listen", "127.0.0.1:0", "--gateway-vnc-listen", "127.0.0.1:0", "--pprof-listen", pprofAddr,
		"--drain-timeout", "0"}, args...)
	p := &benchPortal{cmd: exec.Command(bin, all...), log: &lockedBuffer{}, exited: make(chan struct{}),
		pprof: "http://" + pprofAddr + "/debug/pprof/"}
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.exited) }()
	b.Cleanup(p.stop)
	deadline := time.After(portalStartTimeout)
	listening := regexp.MustCompile(`msg="portal listening" url=(\S+)`)
	for {
		if mode == "demo" {
			if raw, err := os.ReadFile(filepath.Join(dir, "demo.json")); err == nil {
				var info demoInfo
				if err := json.Unmarshal(raw, &info); err != nil {
					b.Fatal(err)
				}
				p.URL = info.URL
				return p
			}
		} else if m := listening.FindStringSubmatch(p.log.String()); m != nil {
			p.URL = m[1]
			return p
		}
		select {
		case <-p.exited:
			b.Fatalf("portal %s stopped: %v\n%s", mode, p.cmd.ProcessState, p.log.String())
		case <-deadline:
			b.Fatalf("portal %s did not start within %v\n%s", mode, portalStartTimeout, p.log.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (p *benchPortal) pid() int { return p.cmd.Process.Pid }

// stop ends the process as an operator does (SIGTERM; with no drain time
// its sessions end at once), and kills it if it hangs.
func (p *benchPortal) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(portalStopTimeout):
		p.cmd.Process.Kill()
		<-p.exited
	}
}

// heapInuseKiB collects the portal's garbage and then reads its Go heap
// in use (the heap profile's memory statistics): without the collection,
// a sign-in's 64 MiB argon2 buffer waiting to be freed would swamp what
// sessions hold.
func (p *benchPortal) heapInuseKiB(b *testing.B) float64 {
	b.Helper()
	resp, err := http.Get(p.pprof + "heap?gc=1&debug=1")
	if err != nil {
		b.Fatalf("read the portal's heap profile: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "# HeapInuse = "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatalf("HeapInuse %q: %v", v, err)
			}
			return f / 1024
		}
	}
	b.Fatalf("no HeapInuse in %sheap (status %d)", p.pprof, resp.StatusCode)
	return 0
}

// demoInfoOf reads a demo portal's demo.json; url replaces its URL (another
// replica on the same database serves the same accounts and resources).
func demoInfoOf(b *testing.B, dir, url string) demoInfo {
	b.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "demo.json"))
	if err != nil {
		b.Fatal(err)
	}
	var info demoInfo
	if err := json.Unmarshal(raw, &info); err != nil {
		b.Fatal(err)
	}
	info.URL = url
	return info
}

// loadAverage is the machine's one-minute load average, which says how
// much the other work on a shared machine weighs on the figures.
func loadAverage(b *testing.B) float64 {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		b.Fatal(err)
	}
	f, err := strconv.ParseFloat(strings.Fields(string(raw))[0], 64)
	if err != nil {
		b.Fatal(err)
	}
	return f
}

// terminalOpenTimeout bounds one terminal's set-up until its first output.
const terminalOpenTimeout = 60 * time.Second

// openTerminal opens a terminal WebSocket and reads until the shell's
// first output, as a browser shows it; it returns the time that took.
func openTerminal(d *websocket.Dialer, wsURL, origin string) (*websocket.Conn, time.Duration, error) {
	start := time.Now()
	ws, _, err := d.Dial(wsURL, http.Header{"Origin": {origin}})
	if err != nil {
		return nil, 0, fmt.Errorf("open terminal WebSocket: %w", err)
	}
	ws.SetReadDeadline(start.Add(terminalOpenTimeout))
	for {
		mt, p, err := ws.ReadMessage()
		if err != nil {
			ws.Close()
			return nil, 0, fmt.Errorf("wait for the shell's first output: %w", err)
		}
		switch {
		case mt == websocket.TextMessage && !bytes.Contains(p, []byte(`"connected"`)):
			ws.Close()
			return nil, 0, fmt.Errorf("terminal refused: %s", p)
		case mt == websocket.BinaryMessage && len(p) > 0:
			took := time.Since(start)
			ws.SetReadDeadline(time.Time{})
			return ws, took, nil
		}
	}
}

// Connect and sign-in workload per iteration and database.
const (
	connectRounds    = 4
	connectsPerRound = 5
	signInClients    = 8
	signInsPerClient = 6
)

// BenchmarkDatabaseConnectSignIn runs the same workload against a demo
// portal on SQLite and one on PostgreSQL (cluster mode, one replica), side
// by side in one run: the time from opening a terminal WebSocket until the
// shell's first output (portal, embedded gateway, real sshd), and password
// sign-ins per second with signInClients clients at once. The two portals
// alternate in rounds so they see the same machine state.
func BenchmarkDatabaseConnectSignIn(b *testing.B) {
	pg := targets.NewPostgres(b)
	type side struct {
		name     string
		info     demoInfo
		dialer   *websocket.Dialer
		wsURL    string
		connects []time.Duration
		rates    []float64
	}
	sides := []*side{{name: "sqlite"}, {name: "pg"}}
	for _, s := range sides {
		dir := b.TempDir()
		var args []string
		if s.name == "pg" {
			args = []string{"--database", pg.DSN(), "--cluster-listen", "127.0.0.1:0"}
		}
		p := startBenchPortal(b, "demo", dir, args...)
		s.info = demoInfoOf(b, dir, p.URL)
		s.dialer, s.wsURL = signedInClient(b, s.info)
		// Warm up: the first terminal and sign-in fill caches and pools.
		ws, _, err := openTerminal(s.dialer, s.wsURL, s.info.URL)
		if err != nil {
			b.Fatalf("%s: %v", s.name, err)
		}
		ws.Close()
		signInRate(b, s.info, 1, 1)
	}
	b.ResetTimer()
	for range b.N {
		for range connectRounds {
			for _, s := range sides {
				for range connectsPerRound {
					ws, took, err := openTerminal(s.dialer, s.wsURL, s.info.URL)
					if err != nil {
						b.Fatalf("%s: %v", s.name, err)
					}
					ws.Close()
					s.connects = append(s.connects, took)
				}
			}
		}
		for _, s := range sides {
			s.rates = append(s.rates, signInRate(b, s.info, signInClients, signInsPerClient))
		}
	}
	b.StopTimer()
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	lite, pgs := sides[0], sides[1]
	for _, s := range sides {
		b.ReportMetric(ms(percentile(s.connects, 0.5)), s.name+"-connect-p50-ms")
		b.ReportMetric(ms(percentile(s.connects, 0.9)), s.name+"-connect-p90-ms")
		b.ReportMetric(mean(s.rates), s.name+"-signins/s")
	}
	b.ReportMetric(float64(percentile(pgs.connects, 0.5))/float64(percentile(lite.connects, 0.5)), "pg/sqlite-connect-p50")
	b.ReportMetric(mean(pgs.rates)/mean(lite.rates), "pg/sqlite-signins")
	b.ReportMetric(loadAverage(b), "load1")
}

func mean(v []float64) float64 {
	var sum float64
	for _, x := range v {
		sum += x
	}
	return sum / float64(len(v))
}

// signInRate signs the demo user in clients*each times, clients at once,
// each client on its own keep-alive connection without cookies (so every
// POST is a new sign-in: password check, session row, audit), and
// returns sign-ins per second.
func signInRate(b *testing.B, info demoInfo, clients, each int) float64 {
	b.Helper()
	form := url.Values{"username": {info.User.Name}, "password": {info.User.Password}}
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	start := time.Now()
	for range clients {
		wg.Go(func() {
			tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			for range each {
				resp, err := c.PostForm(info.URL+"/signin", form)
				if err != nil {
					errs <- err
					return
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) == 0 {
					errs <- fmt.Errorf("sign-in: status %d", resp.StatusCode)
					return
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	return float64(clients*each) / took.Seconds()
}

// Idle sessions: how many, how many warm-up sessions per replica before the
// baseline is read, how many are opened at once, and how many each user
// holds (the portal allows a user sessions.MaxPerUser, 16, across the
// replicas).
const (
	idleSessions     = 1000
	idleWarmUp       = 20
	idleOpenParallel = 8
	sessionsPerUser  = 10
	benchUsers       = (idleSessions+2*idleWarmUp)/sessionsPerUser + 1
)

// userPool is the users seedUsers made, handed out one by one.
type userPool struct {
	names    []string
	password string
	next     int
}

// seedUsers adds benchUsers users with one password to the demo's
// database and grants each the demo's SSH resource, straight in the store
// (the CLI adds users but not grants; the admin pages would take a form
// per user).
func seedUsers(b *testing.B, dir, database string) *userPool {
	b.Helper()
	ctx := context.Background()
	key, err := store.LoadOrCreateKey(filepath.Join(dir, "secrets.key"))
	if err != nil {
		b.Fatal(err)
	}
	sealer, err := store.NewSealer(key)
	if err != nil {
		b.Fatal(err)
	}
	st, err := store.Open(ctx, database, sealer)
	if err != nil {
		b.Fatalf("open the demo's database: %v", err)
	}
	defer st.Close()
	rs, err := st.ListResources(ctx)
	if err != nil {
		b.Fatal(err)
	}
	var resID int64
	for _, r := range rs {
		if r.Name == "demo-ssh" {
			resID = r.ID
		}
	}
	if resID == 0 {
		b.Fatal("no demo-ssh resource in the demo's database")
	}
	pool := &userPool{password: "bench-" + strconv.FormatInt(time.Now().UnixNano(), 36)}
	hash, err := auth.HashPassword(pool.password)
	if err != nil {
		b.Fatal(err)
	}
	for i := range benchUsers {
		name := fmt.Sprintf("bench-user-%03d", i)
		u, err := st.CreateUser(ctx, store.User{Name: name, DisplayName: name, Role: store.RoleUser}, hash)
		if err != nil {
			b.Fatalf("add %s: %v", name, err)
		}
		if _, err := st.CreateGrantMode(ctx, resID, "user", u.ID, store.GrantTerminal); err != nil {
			b.Fatalf("grant demo-ssh to %s: %v", name, err)
		}
		pool.names = append(pool.names, name)
	}
	return pool
}

// replicaTerms is one replica and the signed-in users whose terminals
// open on it.
type replicaTerms struct {
	p     *benchPortal
	info  demoInfo
	users *userPool
	// cur is the user new terminals go to, and how many it has.
	dialer *websocket.Dialer
	wsURL  string
	used   int
}

// slots signs in users from the pool as needed and returns the dialer
// and URL of each of the next n terminals, sessionsPerUser to a user.
func (r *replicaTerms) slots(b *testing.B, n int) (dialers []*websocket.Dialer, urls []string) {
	b.Helper()
	for range n {
		if r.dialer == nil || r.used == sessionsPerUser {
			if r.users.next == len(r.users.names) {
				b.Fatal("the bench users are all in use")
			}
			info := r.info
			info.User = demoLogin{Name: r.users.names[r.users.next], Password: r.users.password}
			r.users.next++
			r.dialer, r.wsURL = signedInClient(b, info)
			r.used = 0
		}
		dialers, urls = append(dialers, r.dialer), append(urls, r.wsURL)
		r.used++
	}
	return dialers, urls
}

// idleBatch is terminals to open on one replica, their users signed in.
type idleBatch struct {
	r       *replicaTerms
	dialers []*websocket.Dialer
	urls    []string
}

func (r *replicaTerms) batch(b *testing.B, n int) idleBatch {
	d, u := r.slots(b, n)
	return idleBatch{r: r, dialers: d, urls: u}
}

// openIdleTerminals opens t's terminals, idleOpenParallel at a time, each
// until the shell's first output, and keeps reading them (answering the
// portal's pings) until they are closed. It returns the connections.
func openIdleTerminals(b *testing.B, t idleBatch) []*websocket.Conn {
	b.Helper()
	r, dialers, urls := t.r, t.dialers, t.urls
	conns := make([]*websocket.Conn, len(urls))
	errs := make(chan error, len(urls))
	sem := make(chan struct{}, idleOpenParallel)
	var wg sync.WaitGroup
	for i := range conns {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			ws, _, err := openTerminal(dialers[i], urls[i], r.info.URL)
			if err != nil {
				errs <- fmt.Errorf("terminal %d on %s: %w", i, r.info.URL, err)
				return
			}
			conns[i] = ws
		})
	}
	wg.Wait()
	close(errs)
	for _, ws := range conns {
		if ws != nil {
			b.Cleanup(func() { ws.Close() })
			// The reader ends when the connection is closed.
			go func() {
				for {
					if _, _, err := ws.NextReader(); err != nil {
						return
					}
				}
			}()
		}
	}
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	return conns
}

// idleMemory is one replica's growth per idle session, and its open
// files with all sessions open.
type idleMemory struct {
	sessions        int
	rssKiB, heapKiB float64
	fds             int
}

// openFiles counts a process's open file descriptors.
func openFiles(b *testing.B, pid int) int {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		b.Fatal(err)
	}
	return len(fds)
}

// minOpenFiles is the open-file limit the idle-session benchmark needs:
// this process holds a WebSocket per session, and each portal (whose Go
// runtime raises its soft limit to the hard one, as this one's does)
// about four descriptors per session (WebSocket, both ends of the
// loopback connection to the embedded gateway, SSH to the target).
const minOpenFiles = 8 * idleSessions

// measureIdle opens share[i] terminals on replicas[i] after a warm-up and
// returns each replica's resident and heap growth per session; the
// terminals are closed before it returns.
func measureIdle(b *testing.B, replicas []*replicaTerms, share []int) []idleMemory {
	b.Helper()
	var pids []int
	for _, r := range replicas {
		pids = append(pids, r.p.pid())
	}
	var all []*websocket.Conn
	defer func() {
		for _, ws := range all {
			ws.Close()
		}
	}()
	// Every user signs in before the baseline: each password check
	// allocates 64 MiB (argon2id) the sessions would then reuse.
	var warm, batches []idleBatch
	for _, r := range replicas {
		warm = append(warm, r.batch(b, idleWarmUp))
	}
	// Opened replica by replica in turns of 100, as a load balancer
	// spreads them.
	const turn = 100
	left := append([]int(nil), share...)
	for {
		more := false
		for i, r := range replicas {
			if n := min(turn, left[i]); n > 0 {
				batches = append(batches, r.batch(b, n))
				left[i] -= n
				more = true
			}
		}
		if !more {
			break
		}
	}
	for _, w := range warm {
		all = append(all, openIdleTerminals(b, w)...)
	}
	quietCPU(b, pids...)
	beforeRSS := make([]float64, len(replicas))
	beforeHeap := make([]float64, len(replicas))
	for i, r := range replicas {
		beforeHeap[i] = r.p.heapInuseKiB(b)
		beforeRSS[i] = settledRSS(b, pids[i])
	}
	for _, t := range batches {
		all = append(all, openIdleTerminals(b, t)...)
	}
	quietCPU(b, pids...)
	out := make([]idleMemory, len(replicas))
	for i, r := range replicas {
		n := float64(share[i])
		heap := r.p.heapInuseKiB(b)
		out[i] = idleMemory{sessions: share[i], rssKiB: (rssKiB(b, pids[i]) - beforeRSS[i]) / n,
			heapKiB: (heap - beforeHeap[i]) / n, fds: openFiles(b, pids[i])}
	}
	return out
}

// BenchmarkIdleSessionsReplicas holds idleSessions idle terminal sessions
// (each a WebSocket, a session through the embedded gateway and an SSH
// connection to a real sshd, opened until the shell's first output) on
// one portal on PostgreSQL, and then on two replicas on one PostgreSQL,
// half on each, and reports each replica's resident and Go heap growth per
// session (heap in use after a collection, read through --pprof-listen).
// Users hold sessionsPerUser sessions each, under the portal's per-user
// cap. Each portal is a process of its own (demo, and a second one
// `portal serve` with the first one's keys), so the replicas' memory is
// measured apart; the embedded gateway is in the portal's process, so its
// share is in the portal's figures. The embedded gateway is one row in the
// shared database, with the address of the replica that started last (B),
// so every replica's sessions go through B's gateway: A's growth is the
// portal's part of a session, and B's less A's, halved, the gateway's. The measurement is made once whatever
// b.N is: 2,000 sessions per iteration would be too slow to repeat.
func BenchmarkIdleSessionsReplicas(b *testing.B) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatal(err)
	}
	if lim.Max < minOpenFiles {
		b.Fatalf("the open-file limit is %d; raise it to at least %d (ulimit -n %d) for %d sessions", lim.Max, minOpenFiles, minOpenFiles, idleSessions)
	}
	// One replica on PostgreSQL, holding all.
	pg1 := targets.NewPostgres(b)
	dir1 := b.TempDir()
	solo := startBenchPortal(b, "demo", dir1, "--database", pg1.DSN(), "--cluster-listen", "127.0.0.1:0")
	r := &replicaTerms{p: solo, info: demoInfoOf(b, dir1, solo.URL), users: seedUsers(b, dir1, pg1.DSN())}
	one := measureIdle(b, []*replicaTerms{r}, []int{idleSessions})[0]
	solo.stop()
	load1 := loadAverage(b)

	// Two replicas on another PostgreSQL: a demo (which seeds the data and
	// runs the sshd) and a `portal serve` with the demo's keys, as the Helm
	// chart mounts the same keys into every replica.
	pg2 := targets.NewPostgres(b)
	dirA := b.TempDir()
	a := startBenchPortal(b, "demo", dirA, "--database", pg2.DSN(), "--cluster-listen", "127.0.0.1:0")
	dirB := b.TempDir()
	for _, f := range []string{"secrets.key", "portal-identity.pem", filepath.Join("gateway", "identity.pem"), "tls.crt", "tls.key"} {
		raw, err := os.ReadFile(filepath.Join(dirA, f))
		if err != nil {
			b.Fatalf("share the first replica's keys: %v", err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dirB, f)), 0o700); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dirB, f), raw, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	bp := startBenchPortal(b, "serve", dirB, "--database", pg2.DSN(), "--cluster-listen", "127.0.0.1:0")
	users := seedUsers(b, dirA, pg2.DSN())
	ra := &replicaTerms{p: a, info: demoInfoOf(b, dirA, a.URL), users: users}
	rb := &replicaTerms{p: bp, info: demoInfoOf(b, dirA, bp.URL), users: users}
	two := measureIdle(b, []*replicaTerms{ra, rb}, []int{idleSessions / 2, idleSessions - idleSessions/2})
	load2 := loadAverage(b)

	b.ReportMetric(one.rssKiB, "one-replica-RSS-KiB/session")
	b.ReportMetric(one.heapKiB, "one-replica-heap-KiB/session")
	for i, m := range two {
		name := string(rune('a' + i))
		b.ReportMetric(m.rssKiB, "replica-"+name+"-RSS-KiB/session")
		b.ReportMetric(m.heapKiB, "replica-"+name+"-heap-KiB/session")
	}
	pairRSS := (two[0].rssKiB*float64(two[0].sessions) + two[1].rssKiB*float64(two[1].sessions)) / idleSessions
	pairHeap := (two[0].heapKiB*float64(two[0].sessions) + two[1].heapKiB*float64(two[1].sessions)) / idleSessions
	b.ReportMetric(pairRSS/one.rssKiB, "two/one-RSS")
	b.ReportMetric(pairHeap/one.heapKiB, "two/one-heap")
	b.ReportMetric(max(load1, load2), "load1")
	b.Logf("load average after one replica %.2f, after two %.2f; open-file limit %d", load1, load2, lim.Max)
	b.Logf("one replica: %d open files with %d sessions; replicas a and b: %d and %d with %d and %d",
		one.fds, one.sessions, two[0].fds, two[1].fds, two[0].sessions, two[1].sessions)
}
