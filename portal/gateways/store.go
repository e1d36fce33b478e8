package gateways

import (
	"net"
	"strconv"

	"github.com/keyway-dev/keyway/gateway/wire"
	"github.com/keyway-dev/keyway/portal/store"
)

// FromStore turns configured gateways into dialable ones. A gateway whose
// stored key does not parse is treated as pending.
func FromStore(gs []store.Gateway) []Gateway {
	out := make([]Gateway, 0, len(gs))
	for _, g := range gs {
		gw := Gateway{
			ID: strconv.FormatInt(g.ID, 10), Name: g.Name, Segment: g.Segment, Embedded: g.Embedded,
			SSHAddr:        net.JoinHostPort(g.Host, strconv.Itoa(g.SSHPort)),
			RDPAddr:        net.JoinHostPort(g.Host, strconv.Itoa(g.RDPPort)),
			VNCAddr:        net.JoinHostPort(g.Host, strconv.Itoa(g.VNCPort)),
			ManagementAddr: net.JoinHostPort(g.Host, strconv.Itoa(g.ManagementPort)),
		}
		if k, err := wire.ParsePublicKey(g.PublicKey); err == nil {
			gw.Key = k
		}
		out = append(out, gw)
	}
	return out
}
