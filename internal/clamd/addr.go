package clamd

import (
	"fmt"
	"net"
	"strings"
)

// Addr is where a clamd listens: Network is "unix" (Address a socket path) or
// "tcp" (Address host:port).
type Addr struct {
	Network string
	Address string
}

// ParseAddr reads an address written unix:///path/to/socket or
// tcp://host:port, the forms agent.yaml and `avfleet scan --clamd` use.
func ParseAddr(s string) (Addr, error) {
	switch {
	case strings.HasPrefix(s, "unix://"):
		p := strings.TrimPrefix(s, "unix://")
		if !strings.HasPrefix(p, "/") {
			return Addr{}, fmt.Errorf("clamd address %q: unix socket path must be absolute (unix:///path)", s)
		}
		return Addr{Network: "unix", Address: p}, nil
	case strings.HasPrefix(s, "tcp://"):
		hp := strings.TrimSuffix(strings.TrimPrefix(s, "tcp://"), "/")
		host, port, err := net.SplitHostPort(hp)
		if err != nil || port == "" {
			return Addr{}, fmt.Errorf("clamd address %q: want tcp://host:port", s)
		}
		if host == "" {
			return Addr{}, fmt.Errorf("clamd address %q: missing host (tcp://host:port)", s)
		}
		return Addr{Network: "tcp", Address: hp}, nil
	default:
		return Addr{}, fmt.Errorf("clamd address %q: want unix:///path or tcp://host:port", s)
	}
}

// String gives the address back in the form ParseAddr reads.
func (a Addr) String() string {
	if a.Network == "unix" {
		return "unix://" + a.Address
	}
	return a.Network + "://" + a.Address
}
