// Command testsummary reads the JSON stream of "go test -json" on standard
// input, prints what plain "go test" would (package results, and the
// output of failed tests), and ends with every skipped test and the reason
// it gave. With -ci, a skipped test fails the run: in CI every
// prerequisite is there, so a skip means a test that did not run while
// the run looks green.
//
//	go test -json ./... 2>&1 | go run ./scripts/testsummary [-ci]
//
// It exits non-zero when a test or a build failed, or when the stream
// holds no test result at all (go test died before reporting).
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

func main() {
	ci := flag.Bool("ci", false, "fail the run when a test was skipped")
	flag.Parse()
	if !summarise(os.Stdin, os.Stdout, *ci) {
		os.Exit(1)
	}
}

// event is one line of "go test -json" (cmd/test2json).
type event struct {
	Action     string
	Package    string
	ImportPath string
	Test       string
	Output     string
}

type testKey struct{ pkg, test string }

type skip struct {
	testKey
	reason string
}

// summarise copies the results from r to w and reports whether the run
// passed.
func summarise(r io.Reader, w io.Writer, ci bool) bool {
	var (
		output  = map[testKey][]string{}
		skipped []skip
		failed  bool
		results int
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		var e event
		if !strings.HasPrefix(line, "{") || json.Unmarshal([]byte(line), &e) != nil {
			// Not from test2json: the go command's own messages.
			fmt.Fprintln(w, line)
			continue
		}
		key := testKey{e.Package, e.Test}
		switch e.Action {
		case "build-output":
			fmt.Fprint(w, e.Output)
		case "build-fail":
			failed = true
		case "output":
			if e.Test == "" {
				if e.Output != "PASS\n" && !strings.HasPrefix(e.Output, "=== ") {
					fmt.Fprint(w, e.Output)
				}
				continue
			}
			output[key] = append(output[key], e.Output)
		case "pass":
			results++
			delete(output, key)
		case "skip":
			results++
			if e.Test != "" {
				skipped = append(skipped, skip{key, skipReason(output[key])})
			}
			delete(output, key)
		case "fail":
			results++
			failed = true
			for _, l := range output[key] {
				if !strings.HasPrefix(l, "=== ") {
					fmt.Fprint(w, l)
				}
			}
			delete(output, key)
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(w, "testsummary: read test results: %v\n", err)
		failed = true
	}
	if results == 0 {
		fmt.Fprintln(w, "testsummary: no test results (did go test run?)")
		failed = true
	}
	printSkips(w, skipped)
	if ci && len(skipped) > 0 {
		fmt.Fprintln(w, "FAIL: tests were skipped in CI, where every prerequisite must be present; make them run (or fail with the reason) instead")
		failed = true
	}
	return !failed
}

// skipReason is what a skipped test logged, without the go test framing.
func skipReason(lines []string) string {
	var out []string
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "=== ") || strings.HasPrefix(l, "--- SKIP") {
			continue
		}
		out = append(out, l)
	}
	if len(out) == 0 {
		return "(no reason given)"
	}
	return strings.Join(out, " / ")
}

func printSkips(w io.Writer, skipped []skip) {
	if len(skipped) == 0 {
		fmt.Fprintln(w, "\nSkipped tests: none")
		return
	}
	sort.SliceStable(skipped, func(i, j int) bool {
		if skipped[i].pkg != skipped[j].pkg {
			return skipped[i].pkg < skipped[j].pkg
		}
		return skipped[i].test < skipped[j].test
	})
	fmt.Fprintf(w, "\nSkipped tests: %d\n", len(skipped))
	for _, s := range skipped {
		fmt.Fprintf(w, "  %s %s: %s\n", s.pkg, s.test, s.reason)
	}
}
