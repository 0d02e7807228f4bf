package observe

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
)

// The handlers serve the hubs that hubs lists: one per running scaler,
// which is one unless a reload changes the Podman address or owner.

// defaultTail is how many kept lines the logs endpoint sends without ?tail.
const defaultTail = 100

// MetricsHandler serves GET /podcell/metrics: every metric in Prometheus'
// text format.
func MetricsHandler(hubs func() []*Hub) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			writeError(w, http.StatusMethodNotAllowed, "use GET")
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		for _, h := range hubs() {
			h.Metrics.WritePrometheus(w)
		}
	}
}

// LogsHandler serves GET /podcell/services/<name>/logs[?tail=N][&follow=1][&color=1]:
// the service's last N output lines (100 by default) as JSON lines and,
// with follow, each new line as it comes until the client goes; without
// color, terminal escape sequences are stripped from them. The name
// is the path value "service" if the route has one, else the path segment
// before /logs.
func LogsHandler(hubs func() []*Hub) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			writeError(w, http.StatusMethodNotAllowed, "use GET")
			return
		}
		name := r.PathValue("service")
		if name == "" {
			name = path.Base(strings.TrimSuffix(r.URL.Path, "/logs"))
		}
		tail := defaultTail
		if v := r.URL.Query().Get("tail"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("tail %q is not a number of lines", v))
				return
			}
			tail = n
		}
		follow := r.URL.Query().Get("follow") != ""
		// Terminal escape sequences (colours) are stripped unless asked
		// for: the lines are kept as the app wrote them.
		color, _ := strconv.ParseBool(r.URL.Query().Get("color"))
		h := hubOf(hubs(), name)
		if h == nil {
			writeError(w, http.StatusNotFound, fmt.Sprintf("service %q does not exist", name))
			return
		}

		w.Header().Set("Content-Type", "application/x-ndjson")
		enc := json.NewEncoder(w)
		send := func(l Line) error {
			if !color {
				l.Text = StripANSI(l.Text)
			}
			return enc.Encode(l)
		}
		if !follow {
			if tail > 0 {
				for _, l := range h.Logs.Recent(name, tail) {
					send(l)
				}
			}
			return
		}
		recent, lines, cancel := h.Logs.Subscribe(name)
		defer cancel()
		recent = recent[len(recent)-min(tail, len(recent)):]
		for _, l := range recent {
			send(l)
		}
		// Caddy's admin server wraps the writer: the controller finds the
		// flusher beneath. Send the headers now, so the client knows it
		// follows even before the service prints anything.
		rc := http.NewResponseController(w)
		rc.Flush()
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					return
				}
				if send(l) != nil || rc.Flush() != nil {
					return
				}
			case <-r.Context().Done():
				return
			}
		}
	}
}

// EventsHandler serves GET /podcell/events[?service=<name>]: the kept error
// events, newest first, as a JSON list.
func EventsHandler(hubs func() []*Hub) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			writeError(w, http.StatusMethodNotAllowed, "use GET")
			return
		}
		name := r.URL.Query().Get("service")
		out := []Event{}
		known := name == ""
		for _, h := range hubs() {
			out = append(out, h.Events.List(name)...)
			known = known || h.Serves(name)
		}
		if !known && len(out) == 0 {
			writeError(w, http.StatusNotFound, fmt.Sprintf("service %q does not exist", name))
			return
		}
		slices.SortStableFunc(out, func(a, b Event) int { return b.Time.Compare(a.Time) })
		for i := range out {
			out[i].Logs = stripLines(out[i].Logs)
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(out)
	}
}

// hubOf returns the hub that serves the named service, or nil.
func hubOf(hubs []*Hub, service string) *Hub {
	for _, h := range hubs {
		if h.Serves(service) {
			return h
		}
	}
	return nil
}

// writeError answers as Caddy's admin API does: {"error": "..."}.
func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
