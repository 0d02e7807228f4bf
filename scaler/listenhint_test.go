package scaler

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Lines as a kernel writes them (header shortened).
const (
	tcpHeader = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	// 127.0.0.1:8080 listening, 0.0.0.0:3000 listening, a connection on 8080.
	tcpLoopback = tcpHeader +
		"   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 10001 0 1 1 0000000000000000 100 0 0 10 0\n" +
		"   1: 00000000:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000 10001 0 2 1 0000000000000000 100 0 0 10 0\n" +
		"   2: 0100007F:1F90 0100007F:A0C2 01 00000000:00000000 00:00000000 00000000 10001 0 3 1 0000000000000000 20 4 30 10 -1\n"
	// :::8080 listening.
	tcp6Any = tcpHeader +
		"   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000 10001 0 4 1 0000000000000000 100 0 0 10 0\n"
)

func TestListenHint(t *testing.T) {
	proc := t.TempDir()
	write := func(pid, name, content string) {
		dir := filepath.Join(proc, pid, "net")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("10", "tcp", tcpLoopback)
	write("10", "tcp6", tcpHeader)
	write("20", "tcp", tcpLoopback)
	write("20", "tcp6", tcp6Any)
	write("30", "tcp", tcpHeader)
	for _, tc := range []struct {
		pid, port int
		want      string
	}{
		{10, 8080, "the app listens on 127.0.0.1:8080 only, which the gateway cannot reach: the app must listen on 0.0.0.0 or :: at $PORT (8080)"},
		{10, 5000, "the app listens on 0.0.0.0:3000, not on port 5000: the app must listen on 0.0.0.0 or :: at $PORT (5000)"},
		{20, 8080, ""},
		{30, 8080, "nothing listens in the instance: the app must listen on 0.0.0.0 or :: at $PORT (8080)"},
		{40, 8080, ""}, // gone: nothing to say
		{0, 8080, ""},
	} {
		if got := listenHint(proc, tc.pid, tc.port); got != tc.want {
			t.Errorf("pid %d port %d: %q, want %q", tc.pid, tc.port, got, tc.want)
		}
	}
	// The kernel's own files, in this process's namespace: a listener of
	// ours on loopback is found, at the address it has.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	want := fmt.Sprintf("the app listens on 127.0.0.1:%d only", port)
	if got := listenHint("/proc", os.Getpid(), port); !strings.HasPrefix(got, want) {
		t.Errorf("own namespace: %q, want it to start with %q", got, want)
	}
}
