package matrixapp

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/bridgev2/matrix"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// The bridge keeps its encryption keys in its own database through
// mautrix's crypto store: on SQLite (sqlite3-fk-wal, as configured for
// small installations) and on PostgreSQL alike, the bot's account and a
// room's outbound session survive a restart under the same pickle key,
// and nothing can be read under another one.
func TestCryptoStoreOnBothDatabases(t *testing.T) {
	for name, open := range map[string]func(t *testing.T) *dbutil.Database{
		"sqlite": func(t *testing.T) *dbutil.Database {
			db, err := dbutil.NewWithDialect("file:"+filepath.Join(t.TempDir(), "bridge.db")+"?_txlock=immediate", "sqlite3-fk-wal")
			require.NoError(t, err)
			return db
		},
		"postgres": func(t *testing.T) *dbutil.Database {
			db, err := dbutil.NewWithDialect(pgtest.Start(t).NewDatabase(t), "postgres")
			require.NoError(t, err)
			return db
		},
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			db := open(t)
			t.Cleanup(func() { _ = db.Close() })
			store := func(pickleKey string) *matrix.SQLCryptoStore {
				return matrix.NewSQLCryptoStore(db, dbutil.NoopLogger, "localhost/sfb", "@sfbbot:localhost", `@sfb\_%:localhost`, pickleKey)
			}
			first := store(goodPickleKey)
			require.NoError(t, first.DB.Upgrade(ctx))
			account := crypto.NewOlmAccount()
			require.NoError(t, first.PutAccount(ctx, account))
			room := id.RoomID("!portal:localhost")
			session, err := crypto.NewOutboundGroupSession(room, &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1}, nil)
			require.NoError(t, err)
			require.NoError(t, first.AddOutboundGroupSession(ctx, session))

			restarted := store(goodPickleKey)
			got, err := restarted.GetAccount(ctx)
			require.NoError(t, err)
			require.NotNil(t, got)
			assert.Equal(t, account.IdentityKey(), got.IdentityKey())
			gotSession, err := restarted.GetOutboundGroupSession(ctx, room)
			require.NoError(t, err)
			require.NotNil(t, gotSession)
			assert.Equal(t, session.ID(), gotSession.ID())

			_, err = store("another pickle key, another bridge, 0123456789").GetAccount(ctx)
			assert.Error(t, err, "the keys open only under the pickle key they were stored with")
		})
	}
}
