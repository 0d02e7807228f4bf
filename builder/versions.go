package builder

import (
	"fmt"
	"strconv"
	"strings"
)

// A version pin (package.json's engines.node, .nvmrc, .python-version,
// runtime.txt, pyproject.toml's requires-python) is checked against the
// language version a runtime carries: the pin fits when some release of
// that version line satisfies it. A runtime knows its line ("20" for
// Node.js, "3.11" for Python), not the exact release of a configured base
// image, so ">=20.11" fits Node.js 20 and "20.11.1" is taken as "20.x".

// version is a release number; missing parts are zero.
type version [3]int

func (a version) less(b version) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

// bound is one end of an interval of versions; inf: no bound.
type bound struct {
	v    version
	incl bool
	inf  bool
}

// span is an interval of versions [lo, hi).
type span struct{ lo, hi bound }

func (s span) empty() bool {
	if s.lo.inf || s.hi.inf {
		return false
	}
	if s.lo.v == s.hi.v {
		return !(s.lo.incl && s.hi.incl)
	}
	return s.hi.v.less(s.lo.v)
}

func (s span) intersect(t span) span {
	lo, hi := s.lo, s.hi
	if !t.lo.inf && (lo.inf || lo.v.less(t.lo.v) || (lo.v == t.lo.v && !t.lo.incl)) {
		lo = t.lo
	}
	if !t.hi.inf && (hi.inf || t.hi.v.less(hi.v) || (hi.v == t.hi.v && !t.hi.incl)) {
		hi = t.hi
	}
	return span{lo, hi}
}

var anyVersion = span{bound{inf: true}, bound{inf: true}}

// lineSpan is every release of a version line: "20" is [20.0.0, 21.0.0),
// "3.11" is [3.11.0, 3.12.0).
func lineSpan(line string) span {
	v, n, _ := parseVersion(line)
	hi := v
	if n <= 1 {
		hi = version{v[0] + 1}
	} else {
		hi = version{v[0], v[1] + 1}
	}
	return span{bound{v: v, incl: true}, bound{v: hi}}
}

// parseVersion reads "20", "v20.11.1", "3.11.*", "20.x": the numbers and how
// many were given before a wildcard or the end. A pre-release or build
// suffix is dropped.
func parseVersion(s string) (version, int, error) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "v")
	s = strings.TrimPrefix(s, "=")
	if i := strings.IndexAny(s, "-+"); i > 0 {
		s = s[:i]
	}
	var v version
	if s == "" || s == "*" || s == "x" || s == "X" {
		return v, 0, nil
	}
	parts := strings.Split(s, ".")
	if len(parts) > 3 {
		parts = parts[:3]
	}
	for i, p := range parts {
		if p == "*" || p == "x" || p == "X" {
			return v, i, nil
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return v, 0, fmt.Errorf("%q is not a version", s)
		}
		v[i] = n
	}
	return v, len(parts), nil
}

// next is the first version past every release that starts with v's first
// n numbers: 20 → 21, 20.11 → 20.12.
func next(v version, n int) version {
	switch n {
	case 0:
		return version{1 << 30}
	case 1:
		return version{v[0] + 1}
	case 2:
		return version{v[0], v[1] + 1}
	}
	return version{v[0], v[1], v[2] + 1}
}

// semverFits reports whether a node-semver range (as package.json's engines
// take it: "||" alternatives of space-separated comparators, hyphen ranges,
// ^ ~ x-ranges) admits a release of the version line.
func semverFits(rng, line string) (bool, error) {
	rng = strings.TrimSpace(rng)
	if rng == "" {
		return true, nil
	}
	ls := lineSpan(line)
	for _, alt := range strings.Split(rng, "||") {
		s, err := semverSet(alt)
		if err != nil {
			return false, err
		}
		if !s.intersect(ls).empty() {
			return true, nil
		}
	}
	return false, nil
}

func semverSet(set string) (span, error) {
	f := strings.Fields(set)
	if len(f) == 3 && f[1] == "-" {
		lo, _, err := parseVersion(f[0])
		if err != nil {
			return span{}, err
		}
		hv, hn, err := parseVersion(f[2])
		if err != nil {
			return span{}, err
		}
		hi := bound{v: hv, incl: true}
		if hn < 3 {
			hi = bound{v: next(hv, hn)}
		}
		return span{bound{v: lo, incl: true}, hi}, nil
	}
	out := anyVersion
	// ">= 20" is one comparator written with a space.
	for i := 0; i < len(f); i++ {
		c := f[i]
		if strings.Trim(c, "<>=~^") == "" && i+1 < len(f) {
			c += f[i+1]
			i++
		}
		s, err := semverComparator(c)
		if err != nil {
			return span{}, err
		}
		out = out.intersect(s)
	}
	return out, nil
}

func semverComparator(c string) (span, error) {
	op := c[:len(c)-len(strings.TrimLeft(c, "<>=~^"))]
	v, n, err := parseVersion(c[len(op):])
	if err != nil {
		return span{}, err
	}
	switch op {
	case "", "=":
		if n == 0 {
			return anyVersion, nil
		}
		if n < 3 {
			return span{bound{v: v, incl: true}, bound{v: next(v, n)}}, nil
		}
		return span{bound{v: v, incl: true}, bound{v: v, incl: true}}, nil
	case ">=":
		return span{bound{v: v, incl: true}, bound{inf: true}}, nil
	case ">":
		if n < 3 {
			return span{bound{v: next(v, n), incl: true}, bound{inf: true}}, nil
		}
		return span{bound{v: v}, bound{inf: true}}, nil
	case "<":
		return span{bound{inf: true}, bound{v: v}}, nil
	case "<=":
		if n < 3 {
			return span{bound{inf: true}, bound{v: next(v, n)}}, nil
		}
		return span{bound{inf: true}, bound{v: v, incl: true}}, nil
	case "~":
		if n <= 1 {
			return span{bound{v: v, incl: true}, bound{v: next(v, 1)}}, nil
		}
		return span{bound{v: v, incl: true}, bound{v: next(v, 2)}}, nil
	case "^":
		// Up to the next change of the first non-zero number.
		var hi version
		switch {
		case v[0] > 0 || n <= 1:
			hi = next(v, 1)
		case v[1] > 0 || n == 2:
			hi = next(v, 2)
		default:
			hi = next(v, 3)
		}
		return span{bound{v: v, incl: true}, bound{v: hi}}, nil
	}
	return span{}, fmt.Errorf("%q is not a version comparator", c)
}

// pep440Fits reports whether a Python version specifier (pyproject.toml's
// requires-python: comma-separated clauses like ">=3.9", "<3.13", "~=3.10",
// "==3.11.*", "!=3.12.*") admits a release of the version line.
func pep440Fits(spec, line string) (bool, error) {
	ls := lineSpan(line)
	s := anyVersion
	for _, clause := range strings.Split(spec, ",") {
		clause = strings.TrimSpace(clause)
		if clause == "" {
			continue
		}
		op := clause[:len(clause)-len(strings.TrimLeft(clause, "<>=!~"))]
		v, n, err := parseVersion(strings.TrimSpace(clause[len(op):]))
		if err != nil {
			return false, err
		}
		wild := strings.HasSuffix(clause, "*")
		switch op {
		case ">=":
			s = s.intersect(span{bound{v: v, incl: true}, bound{inf: true}})
		case ">":
			s = s.intersect(span{bound{v: v}, bound{inf: true}})
		case "<":
			s = s.intersect(span{bound{inf: true}, bound{v: v}})
		case "<=":
			s = s.intersect(span{bound{inf: true}, bound{v: v, incl: true}})
		case "==", "===":
			if wild || n < 3 {
				s = s.intersect(span{bound{v: v, incl: true}, bound{v: next(v, n)}})
			} else {
				s = s.intersect(span{bound{v: v, incl: true}, bound{v: v, incl: true}})
			}
		case "~=":
			if n < 2 {
				return false, fmt.Errorf("%q: ~= needs at least two numbers", clause)
			}
			s = s.intersect(span{bound{v: v, incl: true}, bound{v: next(v, n-1)}})
		case "!=":
			// Excludes a whole line only when it names it (!=3.12.*, !=3.12).
			if (wild || n == 2) && lineSpan(line).intersect(span{bound{v: v, incl: true}, bound{v: next(v, n)}}) == ls {
				return false, nil
			}
		default:
			return false, fmt.Errorf("%q is not a version specifier", clause)
		}
	}
	return !s.intersect(ls).empty(), nil
}
