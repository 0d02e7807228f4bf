// Package observe is podcell's observability: Prometheus metrics, the
// recent output of each service's instances and a record of its errors,
// fed by the scaler (as its Observer) and the HTTP handler, and served as
// plain net/http handlers for Caddy's admin API.
package observe
