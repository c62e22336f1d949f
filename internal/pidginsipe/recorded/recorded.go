// Package recorded holds a session of pidgin-sipe 1.25 (Debian 12),
// recorded message by message against a canned Front End
// (session/README.md says how and what each file shows), for the tests of
// every package that reads or writes SfB's SIP: what a real SfB client
// sends, byte for byte. Its functions are for tests: they fail t on error.
package recorded

import (
	"embed"
	"io/fs"
	"path"
	"strings"
	"testing"
)

//go:embed session
var files embed.FS

// Message is one recorded message: its file name (NNN-client-... or
// NNN-server-..., numbered in the order they crossed the wire) and its
// bytes.
type Message struct {
	Name string
	Raw  []byte
}

// Messages returns the messages whose file names match pattern
// (path.Match, e.g. "*-client-*.sip"), in recording order.
func Messages(t testing.TB, pattern string) []Message {
	t.Helper()
	names, err := fs.Glob(files, path.Join("session", pattern))
	if err != nil {
		t.Fatalf("recorded messages %q: %v", pattern, err)
	}
	out := make([]Message, 0, len(names))
	for _, n := range names {
		out = append(out, Message{Name: path.Base(n), Raw: Read(t, path.Base(n))})
	}
	return out
}

// Read returns the recorded message named name.
func Read(t testing.TB, name string) []byte {
	t.Helper()
	raw, err := files.ReadFile(path.Join("session", name))
	if err != nil {
		t.Fatalf("recorded message: %v", err)
	}
	return raw
}

// Value returns a "name: value" line of recording.txt: what the recording
// used that the messages do not show (the password, the NTLM challenge).
func Value(t testing.TB, name string) string {
	t.Helper()
	for l := range strings.SplitSeq(string(Read(t, "recording.txt")), "\n") {
		if v, ok := strings.CutPrefix(l, name+": "); ok {
			return v
		}
	}
	t.Fatalf("recording.txt has no %s", name)
	return ""
}
