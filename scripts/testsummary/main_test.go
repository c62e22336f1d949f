package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// stream is the "go test -json" output of a package with a passing test,
// a test that skips with a reason and a skipped subtest.
const stream = `{"Action":"start","Package":"ex"}
{"Action":"run","Package":"ex","Test":"TestA"}
{"Action":"output","Package":"ex","Test":"TestA","Output":"=== RUN   TestA\n"}
{"Action":"output","Package":"ex","Test":"TestA","Output":"    a_test.go:3: noise\n"}
{"Action":"output","Package":"ex","Test":"TestA","Output":"--- PASS: TestA (0.00s)\n"}
{"Action":"pass","Package":"ex","Test":"TestA"}
{"Action":"run","Package":"ex","Test":"TestB"}
{"Action":"output","Package":"ex","Test":"TestB","Output":"=== RUN   TestB\n"}
{"Action":"output","Package":"ex","Test":"TestB","Output":"    a_test.go:4: needs a homeserver: set SFB_E2E=1\n"}
{"Action":"output","Package":"ex","Test":"TestB","Output":"--- SKIP: TestB (0.00s)\n"}
{"Action":"skip","Package":"ex","Test":"TestB"}
{"Action":"run","Package":"ex","Test":"TestC/sub"}
{"Action":"output","Package":"ex","Test":"TestC/sub","Output":"--- SKIP: TestC/sub (0.00s)\n"}
{"Action":"skip","Package":"ex","Test":"TestC/sub"}
{"Action":"output","Package":"ex","Output":"PASS\n"}
{"Action":"output","Package":"ex","Output":"ok  \tex\t0.004s\n"}
{"Action":"pass","Package":"ex"}
`

func TestSummaryListsSkipsWithReasons(t *testing.T) {
	var out strings.Builder
	assert.True(t, summarise(strings.NewReader(stream), &out, false), "skips alone do not fail outside CI")
	assert.Equal(t, "ok  \tex\t0.004s\n\nSkipped tests: 2\n"+
		"  ex TestB: a_test.go:4: needs a homeserver: set SFB_E2E=1\n"+
		"  ex TestC/sub: (no reason given)\n", out.String())
}

func TestSummaryInCIFailsOnSkips(t *testing.T) {
	var out strings.Builder
	assert.False(t, summarise(strings.NewReader(stream), &out, true))
	assert.Contains(t, out.String(), "FAIL: tests were skipped in CI")
}

func TestSummaryShowsFailuresAndBuildErrors(t *testing.T) {
	in := `{"ImportPath":"ex/b [ex/b.test]","Action":"build-output","Output":"b/b.go:2:12: undefined: x\n"}
{"ImportPath":"ex/b [ex/b.test]","Action":"build-fail"}
{"Action":"output","Package":"ex/b","Output":"FAIL\tex/b [build failed]\n"}
{"Action":"fail","Package":"ex/b"}
{"Action":"output","Package":"ex","Test":"TestD","Output":"=== RUN   TestD\n"}
{"Action":"output","Package":"ex","Test":"TestD","Output":"    a_test.go:6: boom\n"}
{"Action":"output","Package":"ex","Test":"TestD","Output":"--- FAIL: TestD (0.00s)\n"}
{"Action":"fail","Package":"ex","Test":"TestD"}
go: some message of the go command
`
	var out strings.Builder
	assert.False(t, summarise(strings.NewReader(in), &out, false))
	assert.Equal(t, "b/b.go:2:12: undefined: x\nFAIL\tex/b [build failed]\n    a_test.go:6: boom\n--- FAIL: TestD (0.00s)\n"+
		"go: some message of the go command\n\nSkipped tests: none\n", out.String())
}

func TestSummaryWithoutResultsFails(t *testing.T) {
	var out strings.Builder
	assert.False(t, summarise(strings.NewReader("panic: something before any test\n"), &out, false))
	assert.Contains(t, out.String(), "no test results")
}
