package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/e2e/stack"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/synapse"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

// Synapse numbers the transactions of all its application services from
// one sequence. With a second application service busy beside the bridge,
// the bridge sees gaps in the numbers, and in the minutes after its start
// it refuses such a transaction once, in case Synapse stranded one of the
// bridge's before it (bridge/astxngap.go). Against the real homeserver:
// the refused transaction comes back and is taken, and every Matrix
// message reaches SfB once, in order.
func TestTransactionGapRefusalLosesNothing(t *testing.T) {
	if wanted, reason := synapse.Wanted(); !wanted {
		t.Skip(reason)
	}
	var noiseTxns atomic.Int32
	noise := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/_matrix/app/v1/transactions/") {
			noiseTxns.Add(1)
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{}"))
	}))
	t.Cleanup(noise.Close)
	reg := filepath.Join(t.TempDir(), "noise-registration.yaml")
	require.NoError(t, os.WriteFile(reg, []byte(fmt.Sprintf(`id: noise
url: %s
as_token: noise-as-token-for-the-gap-test
hs_token: noise-hs-token-for-the-gap-test
sender_localpart: noisebot
rate_limited: false
namespaces:
  users:
    - exclusive: false
      regex: "@noise.*"
  aliases: []
  rooms: []
`, noise.URL)), 0o600))

	env := ownEnv(t, "", func(o *stack.Options) { o.OtherAppServices = []string{reg} })
	p := env.newPair(t, "gapped")
	room := env.openPortal(t, p, "hello from SfB")

	ctx, cancel := context.WithTimeout(context.Background(), 4*hop)
	defer cancel()
	acct, err := env.st.HS.RegisterUser(ctx, "noise1", "noise1-matrix-password", false)
	require.NoError(t, err)
	noisy, err := mautrix.NewClient(env.st.HS.URL, acct.UserID, acct.AccessToken)
	require.NoError(t, err)
	noiseRoom, err := noisy.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	require.NoError(t, err)

	// Each message to SfB follows one that only the other application
	// service gets.
	const n = 8
	want := series(func(i int) string { return fmt.Sprintf("gap message %02d", i) }, n)
	for i, text := range want {
		_, err := noisy.SendText(ctx, noiseRoom.RoomID, fmt.Sprintf("noise %02d", i))
		require.NoError(t, err)
		_, err = p.mx.Client.SendText(ctx, room, text)
		require.NoError(t, err)
	}
	env.waitReceived(t, p, "the last message", func(r sim.Received) bool { return r.Message.Text == want[n-1] })
	assert.Equal(t, want, env.sentToColleague(p), "every message once, in order")
	assert.NotZero(t, noiseTxns.Load(), "the other application service got transactions")

	refused, answered := transactionOutcomes(t, env.st.Bridge.LogPath)
	require.NotEmpty(t, refused, "no transaction was refused: the other application service's numbers made no gap")
	for _, txn := range refused {
		assert.Contains(t, answered, txn, "refused transaction %s never came back", txn)
	}
}

// transactionOutcomes reads the bridge's log for the transactions it
// refused for a gap and those it answered with 200.
func transactionOutcomes(t *testing.T, logPath string) (refused []string, answered []string) {
	t.Helper()
	f, err := os.Open(logPath)
	require.NoError(t, err)
	defer f.Close()
	scanner := bufio.NewScanner(f)
	scanner.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	for scanner.Scan() {
		var line struct {
			Message string `json:"message"`
			TxnID   string `json:"txn_id"`
			Status  int    `json:"status"`
		}
		if json.Unmarshal(scanner.Bytes(), &line) != nil || line.TxnID == "" {
			continue
		}
		switch {
		case strings.HasPrefix(line.Message, "Refusing an appservice transaction"):
			refused = append(refused, line.TxnID)
		case line.Message == "Answered appservice transaction" && line.Status == http.StatusOK:
			answered = append(answered, line.TxnID)
		}
	}
	require.NoError(t, scanner.Err())
	return refused, answered
}
