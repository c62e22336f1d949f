package ucwaref

import (
	"os"
	"testing"
)

// ForTest loads the reference for a test. Without the reference the test
// is skipped, saying where it was looked for and how to provide it; in CI
// (the environment variable CI set, and not "false") it fails instead, so
// that the conformance tests never pass there by not running.
func ForTest(t testing.TB) *Corpus {
	t.Helper()
	dir, err := DefaultDir()
	if err != nil {
		t.Fatalf("find the UCWA reference: %v", err)
	}
	c, err := Load(dir)
	if err == nil {
		return c
	}
	const how = "Microsoft's UCWA 2.0 reference (a directory of *.md pages) is looked for in " +
		"../shared/reference/ucwa beside the checkout; to keep it elsewhere, set " + EnvDir + "=/path/to/ucwa"
	if ci := os.Getenv("CI"); ci != "" && ci != "false" {
		t.Fatalf("UCWA conformance: %v. %s. In CI the reference is required.", err, how)
	}
	t.Skipf("UCWA conformance: %v. %s.", err, how)
	return nil
}
