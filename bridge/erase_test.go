package bridge

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/lib/pq"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/bridgev2"
	mxdb "maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/status"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/migration"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/database"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/dbscan"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/pgtest"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/secret"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func withPostgres(t *testing.T) envOption {
	dsn := pgtest.Start(t).NewDatabase(t)
	return func(e *testEnv, _ *Config) { e.dbURI, e.dbDialect = dsn, "postgres" }
}

// adminBot is the bridge bot as erasure and notices use it: it
// records the rooms it cleaned up and the messages it sent.
type adminBot struct {
	bridgev2.MatrixAPI
	mu      sync.Mutex
	deleted []id.RoomID
	sent    map[id.RoomID][]string
}

func (b *adminBot) DeleteRoom(_ context.Context, room id.RoomID, _ bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.deleted = append(b.deleted, room)
	return nil
}

func (b *adminBot) SendMessage(_ context.Context, room id.RoomID, _ event.Type, content *event.Content, _ *bridgev2.MatrixSendExtra) (*mautrix.RespSendEvent, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sent == nil {
		b.sent = map[id.RoomID][]string{}
	}
	msg := content.Parsed.(*event.MessageEventContent)
	b.sent[room] = append(b.sent[room], string(msg.MsgType)+" "+msg.Body)
	return &mautrix.RespSendEvent{EventID: "$sent"}, nil
}

func (b *adminBot) messages(room id.RoomID) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.sent[room]...)
}

// withAdminBot replaces the bridge bot once the bridge started.
func withAdminBot(e *testEnv) *adminBot {
	bot := &adminBot{}
	e.br.Bot = bot
	return bot
}

// bridgeTables is every table the bridge's database holds (mautrix's and
// the connector's) with which of its rows may still name an erased person:
// rows of other people's portals with them, which are those people's
// conversations. A table missing here fails TestErasePersonLeavesNothing:
// decide what erasure does with it first.
var bridgeTables = map[string]func(row dbscan.Row, login string) bool{
	"user":                  nil,
	"user_login":            nil,
	"ghost":                 nil,
	"portal":                func(r dbscan.Row, login string) bool { return r["receiver"] != login },
	"user_portal":           func(r dbscan.Row, login string) bool { return r["login_id"] != login },
	"message":               func(r dbscan.Row, login string) bool { return r["room_receiver"] != login && r["sender_id"] != login },
	"reaction":              func(r dbscan.Row, login string) bool { return r["room_receiver"] != login && r["sender_id"] != login },
	"disappearing_message":  nil,
	"backfill_task":         nil,
	"kv_store":              nil,
	"public_media":          nil,
	"version":               nil,
	"sfb_credential":        nil,
	"sfb_resume_state":      nil,
	"sfb_outbox":            nil,
	"sfb_person":            nil,
	"sfb_audit":             nil,
	"sfb_wave":              nil,
	"sfb_migration_state":   nil,
	"sfb_schema_migrations": nil,
	"sfb_group":             nil,
	"sfb_announcement":      nil,
	"sfb_group_participant": nil,
	"sfb_group_seen":        nil,
}

func TestErasePersonLeavesNothing(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			var opts []envOption
			if backend == "postgres" {
				opts = append(opts, withPostgres(t))
			}
			e := newTestEnv(t, opts...)
			testErasePerson(t, e, withAdminBot(e))
		})
	}
}

func testErasePerson(t *testing.T, e *testEnv, bot *adminBot) {
	ctx := e.ctx
	const alice, bob = "alice@contoso.com", "bob@contoso.com"
	aliceMX, bobMX := id.UserID("@alice:example.org"), id.UserID("@bob:example.org")
	e.transport.passwords[bob] = "bob-pw"

	svc := e.conn.Migration()
	_, err := svc.Import(ctx, []byte("sip_address;matrix_id;wave;mode\nalice@contoso.com;@alice:example.org;w1;\nbob@contoso.com;@bob:example.org;w1;\n"), false, migration.Actor{Who: "@admin:example.org", From: "test"})
	require.NoError(t, err)
	require.NoError(t, svc.SetPersonMode(ctx, bob, migration.Coexistence, migration.Actor{Who: string(aliceMX), From: "alice's room"}))

	aliceLogin, _, aliceSession := e.mustLogin()
	bobUser, err := e.br.GetUserByMXID(ctx, bobMX)
	require.NoError(t, err)
	e.user = bobUser
	bobLogin, err := e.login("Bob@Contoso.com", "-", "bob-pw")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return e.transport.sessionCount() == 2 }, 5*time.Second, 5*time.Millisecond)

	// Alice's portal with bob and bob's with alice, a message of each
	// in each, and a message alice has not sent yet.
	message := func(room networkid.PortalKey, sender networkid.UserID, n string) {
		_, err := e.br.GetGhostByID(ctx, sender)
		require.NoError(t, err)
		require.NoError(t, e.br.DB.Message.Insert(ctx, &mxdb.Message{ID: networkid.MessageID("m-" + n), MXID: id.EventID("$" + n),
			Room: room, SenderID: sender, Timestamp: time.Now()}))
	}
	alicePortal := e.portalFor(aliceLogin.ID, sfb.URI("sip:"+bob))
	require.NoError(t, alicePortal.Save(ctx))
	bobPortal := e.portalFor(bobLogin.ID, sfb.URI("sip:"+alice))
	require.NoError(t, bobPortal.Save(ctx))
	for _, up := range []struct {
		login *bridgev2.UserLogin
		key   networkid.PortalKey
	}{{aliceLogin, alicePortal.PortalKey}, {bobLogin, bobPortal.PortalKey}} {
		require.NoError(t, e.br.DB.UserPortal.Put(ctx, &mxdb.UserPortal{UserMXID: up.login.UserMXID, LoginID: up.login.ID, Portal: up.key}))
	}
	message(alicePortal.PortalKey, alice, "a1")
	message(alicePortal.PortalKey, bob, "a2")
	message(bobPortal.PortalKey, alice, "b1")
	message(bobPortal.PortalKey, bob, "b2")
	_, _, err = e.conn.db.AddOutbox(ctx, database.OutboxEntry{LoginID: alice, Peer: "sip:" + bob, EventID: "$unsent", RoomID: string(alicePortal.MXID),
		SenderMXID: string(aliceMX), MsgType: "m.text", TxnID: "t1"})
	require.NoError(t, err)

	plan, err := e.conn.PlanErasure(ctx, "sip:Alice@Contoso.com")
	require.NoError(t, err)
	assert.Equal(t, ErasurePlan{Address: alice, MatrixUser: aliceMX, Wave: "w1", Login: true, Portals: 1, Ghost: true, Pseudonym: plan.Pseudonym}, *plan)
	assert.True(t, strings.HasPrefix(plan.Pseudonym, "erased:"))
	assert.NotContains(t, plan.Pseudonym, "alice")

	report, err := e.conn.ErasePerson(ctx, "sip:Alice@Contoso.com", migration.Actor{Who: "@admin:example.org", From: "192.0.2.9"})
	require.NoError(t, err)
	assert.True(t, report.UserRow)
	assert.Equal(t, int64(1), report.People)
	assert.Greater(t, report.AuditRows, int64(0))

	// Logged out of SfB, room cleaned up.
	assert.True(t, aliceSession.isClosed(), "alice's SfB session still open")
	assert.Equal(t, []id.RoomID{alicePortal.MXID}, bot.deleted, "alice's portal room was not cleaned up, or another was")
	assert.Nil(t, e.br.GetCachedUserLoginByID(aliceLogin.ID))

	// Table by table: nothing names alice, except other people's
	// conversations with her.
	raw := e.br.DB.RawDB
	tables, err := dbscan.Tables(ctx, raw, e.dbDialect == "postgres")
	require.NoError(t, err)
	require.Contains(t, tables, "sfb_audit")
	require.Contains(t, tables, "portal")
	for _, table := range tables {
		allowed, known := bridgeTables[table]
		if !assert.Truef(t, known, "table %s is new: decide what erasure does with it (bridge/erase.go, database/erase.go), then list it in bridgeTables", table) {
			continue
		}
		rows, err := dbscan.Mentions(ctx, raw, table, alice, string(aliceMX))
		require.NoError(t, err)
		for _, row := range rows {
			if allowed == nil || !allowed(row, alice) {
				t.Errorf("%s still names alice after erasure: %v", table, row)
			}
		}
	}

	// Bob keeps everything: login, session, his portal with alice and his
	// own message in it, his mode, his audit rows.
	assert.NotNil(t, e.br.GetCachedUserLoginByID(bobLogin.ID))
	cred, err := e.conn.db.GetCredential(ctx, bob)
	require.NoError(t, err)
	assert.NotEmpty(t, cred.Token)
	kept, err := e.br.DB.Message.GetPartByMXID(ctx, "$b2")
	require.NoError(t, err)
	assert.NotNil(t, kept, "bob's own message in his portal with alice was removed")
	gone, err := e.br.DB.Message.GetPartByMXID(ctx, "$b1")
	require.NoError(t, err)
	assert.Nil(t, gone, "alice's ghost's message in bob's portal was kept")
	portal, err := e.br.GetExistingPortalByKey(ctx, bobPortal.PortalKey)
	require.NoError(t, err)
	assert.NotNil(t, portal)
	assert.Equal(t, migration.Coexistence, svc.ModeOf(bob))
	_, known := svc.ModeOfMatrixUser(aliceMX)
	assert.False(t, known, "the migration service still knows alice")

	// The audit: the erasure's record under the pseudonym, and alice's
	// earlier rows with it.
	events, err := e.conn.db.ListAudit(ctx, plan.Pseudonym, 100)
	require.NoError(t, err)
	require.NotEmpty(t, events)
	assert.Equal(t, database.AuditErased, events[0].Action)
	assert.Equal(t, "@admin:example.org", events[0].Actor)
	assert.Equal(t, "192.0.2.9", events[0].Origin)
	var actions []string
	for _, ev := range events[1:] {
		actions = append(actions, ev.Action)
	}
	assert.Contains(t, actions, database.AuditLogin)
	assert.Contains(t, actions, database.AuditLogout)
	all, err := e.conn.db.ListAudit(ctx, "", 1000)
	require.NoError(t, err)
	var byAlice int
	for _, ev := range all {
		if ev.Actor == pseudonym(mustKey(t, e.conn), string(aliceMX)) {
			byAlice++
			assert.Equal(t, bob, ev.LoginID, "her action on bob lost bob's address")
		}
	}
	assert.Equal(t, 1, byAlice, "alice's own admin action is not under her pseudonym")
}

func mustKey(t *testing.T, c *Connector) []byte {
	key, err := c.pseudonymKey()
	require.NoError(t, err)
	return key
}

func TestPseudonymIsKeyedAndStable(t *testing.T) {
	c := NewConnector(nil)
	t.Setenv(secret.EnvKey, "")
	c.Config.SecretKey = testKey
	k1 := mustKey(t, c)
	assert.Equal(t, pseudonym(k1, "alice@contoso.com"), pseudonym(k1, "Alice@Contoso.com"))
	assert.NotEqual(t, pseudonym(k1, "alice@contoso.com"), pseudonym(k1, "bob@contoso.com"))
	c.Config.SecretKey = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVowMTIzNDU="
	assert.NotEqual(t, pseudonym(k1, "alice@contoso.com"), pseudonym(mustKey(t, c), "alice@contoso.com"),
		"the pseudonym does not depend on the key: anyone could compute it from a guessed address")
	c.Config.SecretKey = ""
	_, err := c.pseudonymKey()
	assert.ErrorIs(t, err, ErrNoPseudonymKey)
}

func TestLoginStateChangesAreAudited(t *testing.T) {
	e := newTestEnv(t)
	_, client, _ := e.mustLogin()
	states := func() []string {
		events, err := e.conn.db.ListAudit(e.ctx, "alice@contoso.com", 100)
		require.NoError(t, err)
		var out []string
		for i := len(events) - 1; i >= 0; i-- {
			if events[i].Action == database.AuditLoginState {
				out = append(out, events[i].Detail)
			}
		}
		return out
	}
	require.Eventually(t, func() bool { return len(states()) >= 1 && states()[len(states())-1] == "CONNECTED" }, 5*time.Second, 5*time.Millisecond)
	before := len(states())
	client.sendState(status.BridgeState{StateEvent: status.StateConnected})
	assert.Len(t, states(), before, "a repeated state was recorded again")
	client.sendState(status.BridgeState{StateEvent: status.StateTransientDisconnect, Error: StateErrSessionInterrupted, Message: "SfB said: sip:bob@contoso.com gone"})
	got := states()
	require.Len(t, got, before+1)
	assert.Equal(t, "TRANSIENT_DISCONNECT: "+string(StateErrSessionInterrupted), got[before])
}

func TestPlanErasureRefusesWhatIsNoAddress(t *testing.T) {
	e := newTestEnv(t)
	_, err := e.conn.PlanErasure(e.ctx, "not an address")
	assert.ErrorIs(t, err, migration.ErrInvalid)
	assert.Contains(t, err.Error(), "write it as name@domain")
}
