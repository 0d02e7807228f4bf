package builder

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// uidMapRoot is the host uid that uid 0 maps to in a uid_map's lines
// ("inside outside count" each), and whether it maps at all.
func uidMapRoot(lines []string) (uint64, bool) {
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) != 3 {
			continue
		}
		in, err1 := strconv.ParseUint(f[0], 10, 64)
		out, err2 := strconv.ParseUint(f[1], 10, 64)
		n, err3 := strconv.ParseUint(f[2], 10, 64)
		if err1 == nil && err2 == nil && err3 == nil && in == 0 && n > 0 {
			return out, true
		}
	}
	return 0, false
}

// TestBuildUserNamespace: a build step's /proc/self/uid_map does not map
// the step's root to host root, and that root cannot write what host root
// could reach from inside the step: the host's sysfs, which a rootless
// step sees, with its own cgroup's limits in it. The step tries to raise
// its memory and pids limits and to make a cgroup of its own; all fail,
// and the host shows no trace of them. (With build_user root the step's
// uid_map is "0 0 4294967295": this test fails there.)
func TestBuildUserNamespace(t *testing.T) {
	// (Their errors go to /dev/null: a step's stderr and stdout can meet
	// on one line of the log.)
	e, url := sandboxEnv(t, Limits{MemoryMB: 256, Pids: 100, Timeout: 2 * time.Minute})
	if e.b.user == nil {
		t.Fatalf("the builder builds as root; want the default build user %s", DefaultBuildUser)
	}
	escape := "podcell-escape-" + randHex(4)
	t.Cleanup(func() {
		for _, c := range []string{"memory", "pids"} {
			os.Remove(filepath.Join(cgroupRoot, c, escape))
		}
	})
	spec := Spec{Source: Source{URL: url}, Runtime: "python3.11-debian", Build: "echo run " + randHex(6) + "\n" +
		"id -u\n" +
		"sed 's/^/UIDMAP /' /proc/self/uid_map\n" +
		"cp /proc/self/uid_map /app/uid_map\n" +
		"mem=/sys/fs/cgroup/memory$(sed -n 's/^[0-9]*:memory://p' /proc/self/cgroup)\n" +
		"pids=/sys/fs/cgroup/pids$(sed -n 's/^[0-9]*:pids://p' /proc/self/cgroup)\n" +
		"(echo 8589934592 > $mem/memory.limit_in_bytes) 2>/dev/null && echo ESCAPED memory || echo REFUSED memory\n" +
		"(echo max > $pids/pids.max) 2>/dev/null && echo ESCAPED pids || echo REFUSED pids\n" +
		"mkdir /sys/fs/cgroup/memory/" + escape + " 2>/dev/null && echo ESCAPED mkdir || echo REFUSED mkdir\n" +
		"mkdir /sys/fs/cgroup/pids/" + escape + " 2>/dev/null && echo ESCAPED mkdir || echo REFUSED mkdir\n" +
		"echo LIMITS $(cat $mem/memory.limit_in_bytes) $(cat $pids/pids.max)"}
	res, _ := e.build(spec, e.tag("userns"))
	var maps []string
	for _, l := range res.Log {
		if m, ok := strings.CutPrefix(l, "UIDMAP "); ok {
			maps = append(maps, m)
		}
	}
	host, ok := uidMapRoot(maps)
	switch {
	case !ok:
		t.Fatalf("the step's uid_map (%q) does not map uid 0; log:\n%s", maps, strings.Join(res.Log, "\n"))
	case host == 0:
		t.Fatalf("the step's root is host root: uid_map %q", maps)
	case host != uint64(e.b.user.uid):
		t.Errorf("the step's root is host uid %d, want the build user's %d", host, e.b.user.uid)
	}
	t.Logf("build step uid_map: %q", maps)
	log := strings.Join(res.Log, "\n")
	refused := 0
	for _, l := range res.Log {
		if strings.HasPrefix(l, "ESCAPED ") {
			t.Errorf("the step's root wrote a host file: %s", l)
		}
		if strings.HasPrefix(l, "REFUSED ") {
			refused++
		}
	}
	if refused != 4 {
		t.Errorf("%d of the 4 writes were refused:\n%s", refused, log)
	}
	if !strings.Contains(log, "LIMITS 268435456 "+strconv.Itoa(100+podmanPids)) {
		t.Errorf("the step's limits changed:\n%s", log)
	}
	for _, c := range []string{"memory", "pids"} {
		if _, err := os.Stat(filepath.Join(cgroupRoot, c, escape)); err == nil {
			t.Errorf("the step made the host cgroup %s/%s", c, escape)
		}
	}
}

// TestBuildUserValidation: a build user that is missing, is root by
// another name or has no subordinate ids fails New with an error naming
// build_user and the fix; build_user root builds through the API.
func TestBuildUserValidation(t *testing.T) {
	for _, tc := range []struct{ user, want string }{
		{"podcell-no-such-user", "is not a user of this host"},
		{"daemon", "subordinate ids"}, // uid 1, in Debian's base-passwd, without subordinate ids
	} {
		_, err := New(nil, Options{BuildUser: tc.user})
		var ie *InputError
		if !errors.As(err, &ie) || ie.Field != "build_user" || !strings.Contains(err.Error(), tc.want) ||
			!strings.Contains(err.Error(), "make setup") || !strings.Contains(err.Error(), "scripts/setup-rootless.sh") {
			t.Errorf("build_user %s: %v; want an error naming build_user, %q and the fix", tc.user, err, tc.want)
		}
	}
	b, err := New(nil, Options{BuildUser: RootBuildUser})
	if err != nil || b.user != nil {
		t.Errorf("build_user root: %v (user %v)", err, b.user)
	}
	b, err = New(nil, Options{})
	if err != nil || b.user == nil || b.user.name != DefaultBuildUser || b.user.uid == 0 {
		t.Fatalf("default build user: %v %+v", err, b)
	}
	if n := subordinateIDs("/etc/subuid", DefaultBuildUser, strconv.Itoa(int(b.user.uid))); n < minSubIDs {
		t.Errorf("%s has %d subordinate uids", DefaultBuildUser, n)
	}
}
