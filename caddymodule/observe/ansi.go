package observe

import "strings"

// StripANSI removes terminal escape sequences from s: the colours and
// cursor moves of apps that think they write to a terminal (npm, pip,
// frameworks' loggers), which a log reader shows as "\x1b[32m" noise.
// It removes CSI sequences (ESC [ ... final byte, e.g. SGR colours), OSC
// sequences (ESC ] ... BEL or ESC \, e.g. titles and links) and other
// two-byte escapes (ESC and one byte), and returns s itself, without
// allocating, when it has no ESC.
func StripANSI(s string) string {
	i := strings.IndexByte(s, 0x1b)
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i >= 0 {
		b.WriteString(s[:i])
		s = s[i+1:]
		switch {
		case s == "":
		case s[0] == '[': // CSI: parameters and intermediates up to a final byte 0x40-0x7e
			j := 1
			for j < len(s) && (s[j] < 0x40 || s[j] > 0x7e) {
				j++
			}
			s = s[min(j+1, len(s)):]
		case s[0] == ']': // OSC: up to BEL or ST (ESC \)
			end := len(s)
			if k := strings.IndexAny(s, "\x07\x1b"); k >= 0 {
				end = k + 1
				if s[k] == 0x1b && k+1 < len(s) && s[k+1] == '\\' {
					end++
				}
			}
			s = s[end:]
		default: // ESC and one byte: ESC ( B, ESC =, ESC 7...
			n := 1
			if (s[0] == '(' || s[0] == ')') && len(s) > 1 {
				n = 2
			}
			s = s[n:]
		}
		i = strings.IndexByte(s, 0x1b)
	}
	b.WriteString(s)
	return b.String()
}

// stripLines is lines with StripANSI applied: lines itself when none has
// an escape sequence, else a new slice (lines may be shared).
func stripLines(lines []string) []string {
	for i, l := range lines {
		if strings.IndexByte(l, 0x1b) >= 0 {
			out := make([]string, len(lines))
			copy(out, lines[:i])
			for j := i; j < len(lines); j++ {
				out[j] = StripANSI(lines[j])
			}
			return out
		}
	}
	return lines
}
