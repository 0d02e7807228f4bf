package controller

import (
	"net/http"
	"testing"
)

// A service's own bandwidth stops where memory does, at what 4 cores get
// (4 x bandwidth_per_core, 800 Mbit/s by default): a PUT above it is a 400
// naming the field and the maximum, and nothing is stored.
func TestPutBandwidthCappedAtFourCores(t *testing.T) {
	c, _ := newTest(t, nil)
	_, _, err := c.Put("fast", ServiceSpec{Image: "localhost/web:1", BandwidthMbit: 801})
	wantCode(t, "bandwidth_mbit 801", err, http.StatusBadRequest, "bandwidth_mbit 801 Mbit/s is more than the top tier gets: use at most 800 Mbit/s")
	if _, err := c.Status("fast"); err == nil {
		t.Error("the refused service was stored")
	}
	if _, _, err := c.Put("fast", ServiceSpec{Image: "localhost/web:1", BandwidthMbit: 800}); err != nil {
		t.Errorf("bandwidth_mbit 800 (4 cores' worth): %v", err)
	}
}
