package caddymodule

import "testing"

func TestIsCronHeader(t *testing.T) {
	for name, want := range map[string]bool{
		"Podcell-Cron":           true,
		"Podcell-Cron-Secret":    true,
		"podcell-cron-secret":    true,
		"Podcell_Cron_Secret":    true,
		"PODCELL_CRON_SCHEDULED": true,
		"podcell.cron.attempt":   true,
		"Podcell Cron":           true,
		"Podcell-Cro":            false,
		"Podcell-Cronx":          true, // a prefix, as the scheduler's names are
		"PodcellCron":            false,
		"Podcell-Crone":          true,
		"Podcell0Cron":           false,
		"X-Podcell-Cron":         false,
		"Podcell-Cold-Start":     false,
		"":                       false,
	} {
		if got := isCronHeader(name); got != want {
			t.Errorf("isCronHeader(%q) = %v, want %v", name, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { isCronHeader("Podcell_Cron_Secret") }); n != 0 {
		t.Errorf("isCronHeader allocates %v times", n)
	}
}
