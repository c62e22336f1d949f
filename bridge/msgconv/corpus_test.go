package msgconv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// TestSfBHTMLCorpus converts HTML in the shapes SfB 2015/2016 clients and
// Office pastes send, the simulator's samples (sfb/sim/samples/NAME.html,
// which its control API sends by name), and compares the Matrix event
// with what Element should show: testdata/sfb-html/NAME.want.html is the
// formatted_body (empty when the message carries no formatting), and
// NAME.want.txt the body. Every sample has its expectation.
func TestSfBHTMLCorpus(t *testing.T) {
	inputs, err := filepath.Glob("../../sfb/sim/samples/*.html")
	require.NoError(t, err)
	require.NotEmpty(t, inputs)
	for _, in := range inputs {
		name := filepath.Join("testdata/sfb-html", strings.TrimSuffix(filepath.Base(in), ".html"))
		t.Run(filepath.Base(name), func(t *testing.T) {
			got := onePart(t, ToMatrix(sfb.Message{HTML: readFile(t, in)}))
			assert.Equal(t, readFile(t, name+".want.html"), got.FormattedBody)
			assert.Equal(t, readFile(t, name+".want.txt"), got.Body)
			if got.FormattedBody != "" {
				assertSanitised(t, got.FormattedBody, matrixPolicy)
			}
		})
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}
