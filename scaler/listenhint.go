package scaler

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// An app that listens on 127.0.0.1 (Fastify's and many dev servers'
// default) or on a port of its own instead of $PORT starts fine and never
// answers the gateway: the start waits out start_timeout with nothing to
// say why. The sockets the instance's network namespace listens on tell
// it, from the host: /proc/<pid>/net/tcp and tcp6 of any process in the
// container list that namespace's sockets.

// listenHint explains, from what the instance's network namespace listens
// on, why its app does not answer on port; "" if something listens on port
// at an address the gateway reaches (or nothing can be read).
func listenHint(procRoot string, pid, port int) string {
	if pid <= 0 {
		return ""
	}
	var socks []listener
	read := false
	for _, f := range []string{"tcp", "tcp6"} {
		fh, err := os.Open(filepath.Join(procRoot, strconv.Itoa(pid), "net", f))
		if err != nil {
			continue
		}
		read = true
		socks = append(socks, parseListeners(fh)...)
		fh.Close()
	}
	if !read {
		return ""
	}
	return hintFor(socks, port)
}

// listener is a listening TCP socket.
type listener struct {
	ip   net.IP
	port int
}

func hintFor(socks []listener, port int) string {
	must := fmt.Sprintf("the app must listen on 0.0.0.0 or :: at $PORT (%d)", port)
	var loopback, others []string
	for _, l := range socks {
		switch {
		case l.port == port && !l.ip.IsLoopback():
			return ""
		case l.port == port:
			loopback = append(loopback, net.JoinHostPort(l.ip.String(), strconv.Itoa(l.port)))
		case !l.ip.IsLoopback():
			others = append(others, net.JoinHostPort(l.ip.String(), strconv.Itoa(l.port)))
		}
	}
	sort.Strings(others)
	switch {
	case len(loopback) > 0:
		return fmt.Sprintf("the app listens on %s only, which the gateway cannot reach: %s", strings.Join(loopback, " and "), must)
	case len(others) > 0:
		return fmt.Sprintf("the app listens on %s, not on port %d: %s", strings.Join(others, ", "), port, must)
	}
	return "nothing listens in the instance: " + must
}

// parseListeners reads /proc/net/tcp{,6}: "sl local_address rem_address st
// ...", addresses as hex (each 32-bit word in host byte order), st 0A for
// LISTEN.
func parseListeners(r io.Reader) []listener {
	var out []listener
	sc := bufio.NewScanner(r)
	sc.Scan() // the header
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || f[3] != "0A" {
			continue
		}
		addr, portHex, ok := strings.Cut(f[1], ":")
		if !ok {
			continue
		}
		p, err := strconv.ParseUint(portHex, 16, 16)
		if err != nil {
			continue
		}
		raw, err := hex.DecodeString(addr)
		if err != nil || (len(raw) != 4 && len(raw) != 16) {
			continue
		}
		// Each 4-byte word is little-endian on the hosts podcell runs on.
		for i := 0; i < len(raw); i += 4 {
			raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
		}
		out = append(out, listener{ip: net.IP(raw), port: int(p)})
	}
	return out
}
