package builder

import (
	"fmt"
	"strings"
)

// InputError is a problem with what the user asked to build: the field it
// concerns (url, ref, root_dir, runtime, port, start, tag, or file for a
// file of the repository podcell refuses, Value then being its path in the
// repository), the value given and what is wrong with it. Nothing is built
// when it is returned.
type InputError struct {
	Field  string
	Value  string
	Reason string
	Err    error // the underlying cause, if any
}

func (e *InputError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("%s %s", e.Field, e.Reason)
	}
	return fmt.Sprintf("%s %q %s", e.Field, e.Value, e.Reason)
}

func (e *InputError) Unwrap() error { return e.Err }

// BuildError is a failed image build: which Containerfile step failed, what
// that step was for and the last lines of the build log.
type BuildError struct {
	// Step is the step line from the build output that failed, e.g.
	// `STEP 7/11: RUN ["/bin/sh","-ec","exit 3"]`; empty if the build failed
	// before its first step.
	Step string
	// Purpose says what the step does in words: "build command",
	// "install dependencies", "base image", ...
	Purpose string
	// Last holds the last lines of the build log (at most Options.ErrorLines).
	Last []string
	// Log is the whole kept build log (clone and build).
	Log []string
	Err error
}

func (e *BuildError) Error() string {
	var b strings.Builder
	b.WriteString("image build failed")
	if e.Step != "" {
		fmt.Fprintf(&b, " at %s", e.Step)
	}
	if e.Purpose != "" {
		fmt.Fprintf(&b, " (%s)", e.Purpose)
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	if len(e.Last) > 0 {
		b.WriteString("\nlast log lines:\n")
		// Cleaned before the indent: podman's error quotes the step over
		// several log lines.
		for _, l := range strings.Split(withoutCA(strings.Join(e.Last, "\n")), "\n") {
			b.WriteString("  ")
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	return withoutCA(strings.TrimRight(b.String(), "\n"))
}

func (e *BuildError) Unwrap() error { return e.Err }

// caNoise is what build_ca adds to each install and build step, as the
// step's instruction and podman's error quote it: the secret mount and the
// six lines of caPrelude, raw and JSON-escaped (in the exec form).
var caNoise = func() *strings.Replacer {
	escaped := strings.TrimSuffix(strings.TrimPrefix(jsonArray(caPrelude), `["`), `"]`)
	mount := "--mount=type=secret,id=" + caSecretID + ",target=" + caMountPath + " "
	return strings.NewReplacer(mount, "", caPrelude, "", escaped, "")
}()

// withoutCA drops build_ca's additions from a failed build's reason, which
// the admin API, the CLI and a 503 show: with them the failing step reads
// as a wall of certificate plumbing, quoted three times, around the one
// command the user wrote (npm run build). The build log keeps them, in the
// Containerfile it shows.
func withoutCA(s string) string { return caNoise.Replace(s) }
