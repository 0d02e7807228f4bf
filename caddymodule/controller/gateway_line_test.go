package controller

import (
	"strings"
	"testing"
)

// A build's reason reaches anonymous clients in a 503's body: one line,
// bounded, with no terminal escapes from what the repository wrote.
func TestFirstLineForAnswers(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"exit status 1\nmore output", "exit status 1"},
		{"RUN [\"npm run build\"] \x1b[31mred\x1b[0m\r", "RUN [\"npm run build\"] ?[31mred?[0m?"},
		{strings.Repeat("é", 200), strings.Repeat("é", 150) + "..."},
	} {
		if got := firstLine(tc.in); got != tc.want {
			t.Errorf("firstLine(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	code, _, msg := StatusOf("web", &BuildFailedError{Reason: strings.Repeat("x", 5000)})
	if code != 503 || len(msg.Error()) > maxAnswerLine+100 {
		t.Errorf("a 5000-byte reason answers %d with %d bytes, want 503 and a bounded line", code, len(msg.Error()))
	}
}
