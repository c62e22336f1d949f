package bridge

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// The IDs are stored (message IDs, transaction IDs): a change of form
// would show stored calls, meetings and announcements again.
func TestStableIDKeepsItsStoredForm(t *testing.T) {
	assert.Equal(t, "call-ringing:5d7963c4f471e142f5a72214a9666fb1", string(callMessageID("ringing", "call-1")))
	assert.Equal(t, "sfb-wave-dffb6c7a0266088bf7281ecd1d7ed4fb", stableID("sfb-wave-", "alice@contoso.com", "wave 1", "2"))
}
