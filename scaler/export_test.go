package scaler

import "testing"

// The fake runtime, for tests outside the package (package scaler_test)
// that need a scaler without Podman.

type FakeRuntime = fakeRuntime

func NewFakeRuntime(t *testing.T) *FakeRuntime { return newFake(t) }

func (f *fakeRuntime) SetAutoReady(on bool)          { f.setAutoReady(on) }
func (f *fakeRuntime) SetLogs(lines ...string)       { f.setLogs(lines...) }
func (f *fakeRuntime) Write(id, stream, text string) { f.write(id, stream, text) }
func (f *fakeRuntime) Exit(id string, code int)      { f.exit(id, code) }
func (f *fakeRuntime) StartedIDs() []string          { return f.startedIDs() }
