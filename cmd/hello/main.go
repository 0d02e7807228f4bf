// Command hello is podcell's demo service and the fixture its tests run in real
// containers. It is a static binary so its image can be built FROM scratch on a
// host with no registry.
//
// It listens on $PORT and answers:
//
//	/            "$GREETING from <hostname>", with X-Instance (hostname) and
//	             X-Seq (how many "/" requests this instance has served) headers
//	/ws          a WebSocket that echoes each message back
//	/env?name=N  the value of env var N
//	/write?path=P  writes a file at P: 200 "ok" or 500 with the error
//	/limits      the cgroup limits and privileges the process sees, as JSON
//	/sleep?d=D   answers after duration D (e.g. 200ms)
//	/exit?code=C exits with code C after answering
//	/alloc?mb=N  allocates and touches N MiB, then answers (to provoke an OOM kill)
//	/record?key=K&fail=N&sleep=D  records the request's time, method, headers
//	             and body under K, waits D, then answers 500 to the first N
//	             requests of K and 200 to the rest
//	/records?key=K  the requests recorded under K, oldest first, as JSON
//	/status?code=C  answers with status C
//	/log?msg=M   prints M on stdout, then answers
//	/dial?addr=A&timeout=D  opens a TCP connection to A from inside the
//	             instance and reports {"ok", "err", "ms"} as JSON
//	/blob?mb=N   answers N MiB of zeros (download benchmarks)
//	/sink        reads the request body and answers how many bytes it read
//
// HELLO_FAIL_START=msg makes it print msg to stderr and exit 1 before listening,
// so tests can model an image that crash-loops. HELLO_START_DELAY=D waits D
// before listening, to model a slow start.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/websocket"
)

func main() {
	if msg := os.Getenv("HELLO_FAIL_START"); msg != "" {
		fmt.Fprintln(os.Stderr, msg)
		os.Exit(1)
	}
	if d, err := time.ParseDuration(os.Getenv("HELLO_START_DELAY")); err == nil {
		time.Sleep(d)
	}
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	host, _ := os.Hostname()

	mux := http.NewServeMux()
	srv := &http.Server{Addr: os.Getenv("HELLO_LISTEN_HOST") + ":" + port, Handler: mux}
	stopped := make(chan struct{}) // closed once a SIGTERM's shutdown is done
	var seq atomic.Int64
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		greeting := os.Getenv("GREETING")
		if greeting == "" {
			greeting = "hello"
		}
		w.Header().Set("X-Instance", host)
		w.Header().Set("X-Seq", strconv.FormatInt(seq.Add(1), 10))
		fmt.Fprintf(w, "%s from %s\n", greeting, host)
	})
	mux.Handle("/ws", websocket.Handler(func(ws *websocket.Conn) {
		var msg string
		for websocket.Message.Receive(ws, &msg) == nil {
			if websocket.Message.Send(ws, msg) != nil {
				return
			}
		}
	}))
	mux.HandleFunc("/env", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Instance", host)
		fmt.Fprint(w, os.Getenv(r.URL.Query().Get("name")))
	})
	mux.HandleFunc("/write", func(w http.ResponseWriter, r *http.Request) {
		if err := os.WriteFile(r.URL.Query().Get("path"), []byte("x"), 0o644); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, "ok")
	})
	mux.HandleFunc("/limits", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(readLimits())
	})
	mux.HandleFunc("/sleep", func(w http.ResponseWriter, r *http.Request) {
		d, _ := time.ParseDuration(r.URL.Query().Get("d"))
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
		w.Header().Set("X-Instance", host)
		fmt.Fprintf(w, "slept %s on %s\n", d, host)
	})
	var hoard [][]byte
	mux.HandleFunc("/alloc", func(w http.ResponseWriter, r *http.Request) {
		mb, _ := strconv.Atoi(r.URL.Query().Get("mb"))
		for i := 0; i < mb; i++ {
			b := make([]byte, 1<<20)
			for j := range b {
				b[j] = byte(j)
			}
			hoard = append(hoard, b)
		}
		fmt.Fprintf(w, "holding %d MiB\n", len(hoard))
	})
	var recMu sync.Mutex
	records := map[string][]record{}
	mux.HandleFunc("/record", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
		recMu.Lock()
		key := q.Get("key")
		records[key] = append(records[key], record{At: time.Now(), Method: r.Method, Header: r.Header, Body: string(body), Instance: host})
		n := len(records[key])
		recMu.Unlock()
		d, _ := time.ParseDuration(q.Get("sleep"))
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
		if fail, _ := strconv.Atoi(q.Get("fail")); n <= fail {
			http.Error(w, fmt.Sprintf("failing request %d of %d", n, fail), http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "recorded %d\n", n)
	})
	mux.HandleFunc("/records", func(w http.ResponseWriter, r *http.Request) {
		recMu.Lock()
		defer recMu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(append([]record{}, records[r.URL.Query().Get("key")]...))
	})
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		code, err := strconv.Atoi(r.URL.Query().Get("code"))
		if err != nil || code < 200 || code > 599 {
			code = http.StatusBadRequest
		}
		w.WriteHeader(code)
	})
	mux.HandleFunc("/log", func(w http.ResponseWriter, r *http.Request) {
		fmt.Println(r.URL.Query().Get("msg"))
		fmt.Fprint(w, "logged")
	})
	mux.HandleFunc("/dial", func(w http.ResponseWriter, r *http.Request) {
		d, err := time.ParseDuration(r.URL.Query().Get("timeout"))
		if err != nil {
			d = 5 * time.Second
		}
		began := time.Now()
		c, err := net.DialTimeout("tcp", r.URL.Query().Get("addr"), d)
		res := map[string]any{"ok": err == nil, "ms": float64(time.Since(began).Microseconds()) / 1000}
		if err != nil {
			res["err"] = err.Error()
		} else {
			c.Close()
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(res)
	})
	mux.HandleFunc("/blob", func(w http.ResponseWriter, r *http.Request) {
		mb, _ := strconv.Atoi(r.URL.Query().Get("mb"))
		w.Header().Set("Content-Length", strconv.Itoa(mb<<20))
		buf := make([]byte, 1<<20)
		for i := 0; i < mb; i++ {
			if _, err := w.Write(buf); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/sink", func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "%d\n", n)
	})
	mux.HandleFunc("/exit", func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.URL.Query().Get("code"))
		fmt.Fprintf(w, "exiting %d\n", code)
		w.(http.Flusher).Flush()
		// As a process that exits between requests: it stops accepting
		// (new connections are refused from then on), finishes the
		// requests it has, this one included, and exits. An exit in the
		// middle of a request is a failed request, which no gateway can
		// answer for.
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			srv.Shutdown(ctx)
			fmt.Fprintf(os.Stderr, "exit requested with code %d\n", code)
			os.Exit(code)
		}()
	})

	// HELLO_LISTEN_HOST (e.g. 127.0.0.1) binds one address only, as apps
	// with a loopback default do: the gateway cannot reach those.
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		close(stopped)
	}()
	fmt.Fprintf(os.Stderr, "hello listening on :%s\n", port)
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// ListenAndServe returns as Shutdown begins: wait for the requests
	// it lets finish (or for /exit's own exit).
	<-stopped
}

// record is one request /record saw.
type record struct {
	At       time.Time   `json:"at"`
	Method   string      `json:"method"`
	Header   http.Header `json:"header"`
	Body     string      `json:"body"`
	Instance string      `json:"instance"`
}

// readLimits reports what the kernel enforces on this process, for cgroup v1
// and v2 alike, so tests check the limits from inside the container.
func readLimits() map[string]string {
	read := func(path string) string {
		b, err := os.ReadFile(path)
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(b))
	}
	out := map[string]string{}
	if read("/sys/fs/cgroup/cgroup.controllers") != "" {
		out["cgroup"] = "v2"
		out["memory"] = read("/sys/fs/cgroup/memory.max")
		out["swap"] = read("/sys/fs/cgroup/memory.swap.max")
		out["cpu"] = read("/sys/fs/cgroup/cpu.max")
		out["cpuset"] = read("/sys/fs/cgroup/cpuset.cpus.effective")
		out["pids"] = read("/sys/fs/cgroup/pids.max")
	} else {
		out["cgroup"] = "v1"
		out["memory"] = read("/sys/fs/cgroup/memory/memory.limit_in_bytes")
		out["memsw"] = read("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
		out["cpu"] = read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") + " " + read("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
		out["cpuset"] = read("/sys/fs/cgroup/cpuset/cpuset.cpus")
		out["pids"] = read("/sys/fs/cgroup/pids/pids.max")
	}
	for _, line := range strings.Split(read("/proc/self/status"), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && (k == "NoNewPrivs" || k == "CapEff" || k == "CapBnd") {
			out[k] = strings.TrimSpace(v)
		}
	}
	out["uid_map"] = strings.Join(strings.Fields(read("/proc/self/uid_map")), " ")
	return out
}
