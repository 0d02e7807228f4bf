package store

import (
	"errors"
	"testing"
	"time"
)

type testRun struct {
	N int `json:"n"`
}

func TestCronRunsAreBoundedAndGoWithTheirJob(t *testing.T) {
	s := openT(t, t.TempDir(), testKey(t))
	defer s.Close()
	t0 := time.Date(2024, 3, 10, 3, 0, 0, 0, time.UTC)
	for i := range 60 {
		// Two records per start time, as a tick that missed runs makes.
		started := t0.Add(time.Duration(i/2) * time.Second)
		if err := s.AddCronRun("svc", "tick", started, started.Add(-time.Duration(i%2+1)*time.Hour), testRun{i}, 50); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddCronRun("svc", "tick-2", t0, t0, testRun{100}, 50); err != nil {
		t.Fatal(err)
	}
	runs := func(job string) []int {
		out, err := CronRuns[testRun](s, "svc", job)
		if err != nil {
			t.Fatal(err)
		}
		ns := make([]int, len(out))
		for i, r := range out {
			ns[i] = r.N
		}
		return ns
	}
	got := runs("tick")
	if len(got) != 50 {
		t.Fatalf("kept %d runs, want 50", len(got))
	}
	// Within one start time the key orders by scheduled time: run 2k+1 was
	// scheduled an hour before run 2k.
	for i, n := range got {
		want := 10 + i + 1 - 2*(i%2)
		if n != want {
			t.Fatalf("runs kept: %v; want the newest 50 in time order", got)
		}
	}

	if err := s.PutCronJob("svc", "tick", map[string]string{"schedule": "@hourly"}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteCronJob("svc", "tick"); err != nil {
		t.Fatal(err)
	}
	if n := len(runs("tick")); n != 0 {
		t.Errorf("%d runs left after DeleteCronJob", n)
	}
	if n := len(runs("tick-2")); n != 1 {
		t.Errorf("DeleteCronJob of tick took tick-2's runs too: %d left", n)
	}
	if err := s.DeleteCronJob("svc", "tick"); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleting a missing job: %v, want ErrNotFound", err)
	}
}

func TestCronSecretIsStableUntilTheServiceGoes(t *testing.T) {
	s := openT(t, t.TempDir(), testKey(t))
	defer s.Close()
	a, err := s.CronSecret("svc")
	if err != nil || len(a) != 64 {
		t.Fatalf("secret %q, %v; want 64 hex digits", a, err)
	}
	if again, _ := s.CronSecret("svc"); again != a {
		t.Fatalf("the secret changed between calls")
	}
	if other, _ := s.CronSecret("svc2"); other == a {
		t.Fatalf("two services share a secret")
	}
	if err := s.PutCronJob("svc", "tick", map[string]string{"schedule": "@hourly"}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteService("svc"); err != nil {
		t.Fatal(err)
	}
	if jobs, _ := CronJobs[map[string]string](s, "svc"); len(jobs) != 0 {
		t.Errorf("%d cron jobs left after DeleteService", len(jobs))
	}
	if b, _ := s.CronSecret("svc"); b == a {
		t.Errorf("a service made again got the deleted one's secret")
	}
}
