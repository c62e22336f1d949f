package e2e

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto/cryptohelper"
	"maunium.net/go/mautrix/event"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/synapse"
)

// newEncryptingUser is a Matrix user whose client encrypts and decrypts
// like Element: mautrix's crypto helper with its own device keys in a
// SQLite store, fed by the sync. It records what the sync brings, as
// newMatrixUser does, and beside each m.room.encrypted event the
// m.room.message it decrypts to (marked event.SourceDecrypted).
func newEncryptingUser(t testing.TB, hs *synapse.Server, acct synapse.Account) *matrixUser {
	t.Helper()
	u := matrixUserOf(t, hs, acct)
	client := u.Client
	syncer := mautrix.NewDefaultSyncer()
	syncer.FilterJSON = u.GetFilterJSON(u.ID)
	syncer.OnEvent(func(_ context.Context, evt *event.Event) {
		if evt.RoomID != "" && evt.Mautrix.EventSource&(event.SourceTimeline|event.SourceInvite) != 0 {
			u.record(evt)
		}
	})
	client.Syncer = syncer
	helper, err := cryptohelper.NewCryptoHelper(client, []byte("pickle key of a test user's device"), filepath.Join(t.TempDir(), "crypto.db"))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, helper.Init(ctx), "set up the user's device keys")
	client.Crypto = helper
	u.startSync()
	t.Cleanup(func() {
		u.stopSync()
		_ = helper.Close()
	})
	return u
}

// record adds one event to what the user has seen.
func (u *matrixUser) record(evt *event.Event) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.events = append(u.events, evt)
	close(u.changed)
	u.changed = make(chan struct{})
}
