// Package machine has what the benchmarks report about the host they ran
// on, and the order statistics they share.
package machine

import (
	"math"
	"os"
	"runtime"
	"strings"

	"github.com/podcell/podcell/scaler"
)

// ReadTrim is a file's content without surrounding space, or "?".
func ReadTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

// Loadavg is the 1, 5 and 15 minute load averages.
func Loadavg() string {
	f := strings.Fields(ReadTrim("/proc/loadavg"))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// OSName is the PRETTY_NAME of /etc/os-release.
func OSName() string {
	for _, line := range strings.Split(ReadTrim("/etc/os-release"), "\n") {
		if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return runtime.GOOS
}

// Percentile is the nearest-rank percentile of sorted xs; p=50 is the median
// (the mean of the two middle values for an even count).
func Percentile(sorted []float64, p float64) float64 {
	n := len(sorted)
	if n == 0 {
		return math.NaN()
	}
	if p == 50 && n%2 == 0 {
		return (sorted[n/2-1] + sorted[n/2]) / 2
	}
	k := int(math.Ceil(p / 100 * float64(n)))
	return sorted[min(max(k, 1), n)-1]
}

// RootMode says whether Podman runs rootless or rootful.
func RootMode(h scaler.HostInfo) string {
	if h.Rootless {
		return "rootless"
	}
	return "rootful"
}
