package main

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"

	"github.com/keyway-dev/keyway/gateway/metrics"
	"github.com/keyway-dev/keyway/gateway/spool"
)

// defaultSpoolMinFree is the free disk space a gateway's spool needs before
// it starts a recording: a session that must be recorded is refused below
// it, others run unrecorded.
const defaultSpoolMinFree = 64 << 20

// openSpool opens a gateway's recording spool and recovers what a crash
// left in it.
func openSpool(dir string, minFree uint64, logger *slog.Logger, m *metrics.Gateway) (*spool.Spool, error) {
	if minFree == 0 {
		minFree = defaultSpoolMinFree
	}
	sp, err := spool.Open(spool.Config{Dir: dir, MinFree: minFree, Fsync: true, Logger: logger, Metrics: m})
	if err != nil {
		return nil, fmt.Errorf("recording spool: %w", err)
	}
	recovered, err := sp.Recover()
	if err != nil {
		logger.Error("recording spool recovery", "err", err)
	}
	if len(recovered) > 0 {
		logger.Warn("recovered recordings left open by a crash; they are uploaded as incomplete", "count", len(recovered))
	}
	return sp, nil
}

// loopbackURL is the portal's own HTTPS address as its embedded gateway
// reaches it: on loopback when it listens on every interface.
func loopbackURL(a net.Addr) string {
	ta := a.(*net.TCPAddr)
	ip := ta.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return "https://" + net.JoinHostPort(ip.String(), strconv.Itoa(ta.Port))
}
