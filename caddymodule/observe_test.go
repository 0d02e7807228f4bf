package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The admin API mounts the observe handlers: with no scaler running they
// answer, empty or not found, rather than falling through.
func TestAdminObserveRoutes(t *testing.T) {
	mux := http.NewServeMux()
	for _, r := range (adminAPI{}).Routes() {
		mux.HandleFunc(r.Pattern, func(w http.ResponseWriter, req *http.Request) {
			if err := r.Handler.ServeHTTP(w, req); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
			}
		})
	}
	cases := []struct {
		path        string
		code        int
		contentType string
	}{
		{"/podcell/metrics", 200, "text/plain; version=0.0.4"},
		{"/podcell/events", 200, "application/json"},
		{"/podcell/events?service=nope", 404, "application/json"},
		{"/podcell/services/nope/logs", 404, "application/json"},
	}
	for _, c := range cases {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest(http.MethodGet, c.path, nil))
		if w.Code != c.code || !strings.HasPrefix(w.Header().Get("Content-Type"), c.contentType) {
			t.Errorf("GET %s: %d %q, want %d %q: %s", c.path, w.Code, w.Header().Get("Content-Type"), c.code, c.contentType, w.Body)
		}
	}
}
