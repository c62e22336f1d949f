package ucwaref

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
)

// outcomeTB records how ForTest ended a test.
type outcomeTB struct {
	testing.TB
	skipped, failed string
}

func (o *outcomeTB) Helper() {}
func (o *outcomeTB) Skipf(format string, args ...any) {
	o.skipped = fmt.Sprintf(format, args...)
	panic(o)
}
func (o *outcomeTB) Fatalf(format string, args ...any) {
	o.failed = fmt.Sprintf(format, args...)
	panic(o)
}

func forTest(t *testing.T) *outcomeTB {
	o := &outcomeTB{TB: t}
	func() {
		defer func() {
			if r := recover(); r != nil && r != o {
				panic(r)
			}
		}()
		ForTest(o)
	}()
	return o
}

func TestForTestWithoutReference(t *testing.T) {
	t.Setenv(EnvDir, t.TempDir())

	t.Setenv("CI", "")
	o := forTest(t)
	assert.Empty(t, o.failed)
	assert.Contains(t, o.skipped, "../shared/reference/ucwa")
	assert.Contains(t, o.skipped, EnvDir+"=/path/to/ucwa")

	for _, ci := range []string{"true", "1"} {
		t.Setenv("CI", ci)
		o = forTest(t)
		assert.Empty(t, o.skipped, "CI=%s must not skip", ci)
		assert.Contains(t, o.failed, "no *.md files")
		assert.Contains(t, o.failed, EnvDir+"=/path/to/ucwa")
	}
}
