package caddymodule

import (
	"slices"
	"testing"
)

// A reload that changes an option the data dir's controller was made with
// is told which ones wait for a restart; one that changes none, or only
// options a reload applies (build settings, keep_images), hears nothing.
func TestRestartOnlyOptions(t *testing.T) {
	base := App{Podman: "unix:///run/podman/podman.sock", Owner: "podcell", StartupCPU: 2}
	same := base
	same.KeepImages = new(int) // applied by a reload: not listed
	same.BuildConcurrency = 4
	if got := restartOnly(base.processOptions(), same.processOptions()); len(got) != 0 {
		t.Errorf("reload-applied changes: %v, want none listed", got)
	}
	changed := base
	changed.Owner, changed.Standby, changed.StartupCPU, changed.EncryptionKeyEnv = "other", "created", -1, "PODCELL_KEY"
	want := []string{"owner", "standby", "encryption_key_file/encryption_key_env", "startup_cpu"}
	if got := restartOnly(base.processOptions(), changed.processOptions()); !slices.Equal(got, want) {
		t.Errorf("restart-only changes: %v, want %v", got, want)
	}
}
