package builder

import "testing"

func TestSemverFits(t *testing.T) {
	for _, tc := range []struct {
		rng, line string
		want      bool
	}{
		{"", "20", true},
		{"*", "20", true},
		{"20", "20", true},
		{"20.x", "20", true},
		{"18.x", "20", false},
		{">=18", "20", true},
		{">= 18", "20", true},
		{">=21", "20", false},
		{">=20.11.0", "20", true},
		{"<20", "20", false},
		{"<=20", "20", true},
		{"<20.5", "20", true},
		{">20", "20", false},
		{">19.9.9", "20", true},
		{"^18.17.0", "20", false},
		{"^20.3.1", "20", true},
		{"~20.1", "20", true},
		{"~18.2", "20", false},
		{"18 || 20", "20", true},
		{"16 || 18", "20", false},
		{">=14 <19", "20", false},
		{">=14 <21", "20", true},
		{"14 - 20", "20", true},
		{"14 - 19.9", "20", false},
		{"v20.11.1", "20", true},
		{"=20.11.1", "20", true},
		{">=16.0.0 <17.0.0 || >=18", "18", true},
		{"^0.1.2", "20", false},
	} {
		got, err := semverFits(tc.rng, tc.line)
		if err != nil || got != tc.want {
			t.Errorf("semverFits(%q, %s) = %v, %v; want %v", tc.rng, tc.line, got, err, tc.want)
		}
	}
	for _, bad := range []string{"latest-ish", ">=abc", "20.a"} {
		if _, err := semverFits(bad, "20"); err == nil {
			t.Errorf("semverFits(%q): no error", bad)
		}
	}
}

func TestPEP440Fits(t *testing.T) {
	for _, tc := range []struct {
		spec, line string
		want       bool
	}{
		{">=3.9", "3.11", true},
		{">=3.12", "3.11", false},
		{">=3.8,<3.12", "3.11", true},
		{">=3.8, <3.11", "3.11", false},
		{"==3.11.*", "3.11", true},
		{"==3.10.*", "3.11", false},
		{"==3.11.4", "3.11", true},
		{"~=3.10", "3.11", true},
		{"~=3.11.2", "3.11", true},
		{"~=3.10.2", "3.11", false},
		{"!=3.11.*", "3.11", false},
		{"!=3.12.*", "3.11", true},
		{"==3.*", "3.11", true},
		{">3.11", "3.11", true},
		{"<=3.10", "3.11", false},
	} {
		got, err := pep440Fits(tc.spec, tc.line)
		if err != nil || got != tc.want {
			t.Errorf("pep440Fits(%q, %s) = %v, %v; want %v", tc.spec, tc.line, got, err, tc.want)
		}
	}
	for _, bad := range []string{"~=3", "^3.11", ">=three"} {
		if _, err := pep440Fits(bad, "3.11"); err == nil {
			t.Errorf("pep440Fits(%q): no error", bad)
		}
	}
}
