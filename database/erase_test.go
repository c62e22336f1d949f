package database

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/dbscan"
)

func testPseudonym(s string) string {
	mac := hmac.New(sha256.New, []byte("test key"))
	mac.Write([]byte(s))
	return "erased:" + hex.EncodeToString(mac.Sum(nil))[:24]
}

// erasureTables is every table of this package with what erasure does to
// it. A migration that adds a table must add it here, after deciding what
// ErasePerson does with it; the test fails until then.
var erasureTables = map[string]string{
	"sfb_credential":        "deleted",
	"sfb_resume_state":      "deleted",
	"sfb_outbox":            "deleted",
	"sfb_person":            "deleted",
	"sfb_audit":             "anonymised",
	"sfb_wave":              "holds no person",
	"sfb_migration_state":   "holds no person",
	"sfb_schema_migrations": "holds no person",
	"sfb_group_participant": "deleted",
	"sfb_announcement":      "deleted",
	"sfb_group_seen":        "deleted",
	"sfb_group":             "holds no person", // a subject, shared by its participants
}

// seedPerson stores a person in every table that can hold one.
func seedPerson(t *testing.T, db *DB, address, matrixUser, wave string) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, db.PutCredential(ctx, Credential{LoginID: address, SignInAddress: address, Username: "CONTOSO\\" + strings.Split(address, "@")[0], Token: []byte("sealed")}))
	require.NoError(t, db.PutResumeState(ctx, address, `{"app":"https://fe/ucwa/`+address+`"}`))
	_, _, err := db.AddOutbox(ctx, OutboxEntry{LoginID: address, Peer: "sip:someone@contoso.com", EventID: "$" + address, RoomID: "!r:example.org",
		SenderMXID: matrixUser, MsgType: "m.text", TxnID: "t-" + address, Text: "hello"})
	require.NoError(t, err)
	require.NoError(t, db.ApplyImport(ctx, ImportChange{NewWaves: []string{wave}, People: []Person{{Address: address, MatrixUser: matrixUser, Wave: wave}}},
		AuditEvent{Action: AuditImport, Actor: "@admin:example.org", Origin: "!mgmt:example.org", Detail: "1 person"}))
	require.NoError(t, db.AddAudit(ctx, AuditEvent{LoginID: address, MatrixUser: matrixUser, Action: AuditLogin}))
	require.NoError(t, db.ClaimAnnouncement(ctx, address, wave, matrixUser, 1))
	require.NoError(t, db.AnnouncementSent(ctx, address, wave, "!mgmt-"+address, 1, time.Now()))
	_, err = db.EnsureGroup(ctx, "thread-1", "Planning")
	require.NoError(t, err)
	_, err = db.AddGroupParticipant(ctx, "thread-1", "sip:"+address)
	require.NoError(t, err)
	require.NoError(t, db.RecordGroupCopy(ctx, GroupCopy{LoginID: address, MessageID: "m-" + address, ThreadID: "thread-1",
		Sender: "sip:someone@contoso.com", Fingerprint: "f", SentAt: time.Now()}, "c-"+address))
	require.NoError(t, db.AddAudit(ctx, AuditEvent{LoginID: address, MatrixUser: matrixUser, Action: AuditLoginFailed,
		Detail: "SfB refused sip:" + strings.ToUpper(address) + " (401)"}))
}

func TestErasePersonCoversEveryTable(t *testing.T) {
	upgraded(t, func(t *testing.T, raw *sql.DB, db *DB) {
		ctx := context.Background()
		const alice, aliceMX = "alice@contoso.com", "@alice:example.org"
		const bob, bobMX = "bob@contoso.com", "@bob:example.org"
		seedPerson(t, db, alice, aliceMX, "w1")
		seedPerson(t, db, bob, bobMX, "w2")
		// Alice was an admin too: her own actions name her as actor.
		require.NoError(t, db.SetPersonMode(ctx, bob, "coexistence", AuditEvent{Action: AuditPersonModeSet, Actor: aliceMX, Origin: "10.0.0.1", LoginID: bob, MatrixUser: bobMX}))
		gen, err := db.ModeGeneration(ctx)
		require.NoError(t, err)
		auditBefore, err := db.ListAudit(ctx, "", MaxAuditList)
		require.NoError(t, err)

		tables, err := dbscan.Tables(ctx, raw, db.Dialect() == Postgres)
		require.NoError(t, err)
		before := map[string]int{}
		for _, table := range tables {
			if !strings.HasPrefix(table, "sfb_") {
				continue
			}
			_, known := erasureTables[table]
			require.Truef(t, known, "table %s is new: decide what ErasePerson does with it, then list it in erasureTables", table)
			rows, err := dbscan.Mentions(ctx, raw, table, alice, aliceMX)
			require.NoError(t, err)
			before[table] = len(rows)
		}
		for table, what := range erasureTables {
			if what != "holds no person" {
				assert.NotZerof(t, before[table], "the test stored nothing of alice in %s", table)
			}
		}

		n, err := db.ErasePerson(ctx, Erasure{Address: alice, MatrixUser: aliceMX, Pseudonym: testPseudonym,
			Record: AuditEvent{Actor: "@admin:example.org", Origin: "192.0.2.7", Detail: "erased on request"}})
		require.NoError(t, err)
		assert.Equal(t, Erased{Credentials: 1, ResumeStates: 1, Outbox: 1, People: 1, Announcements: 1, GroupRows: 1, GroupSeen: 1, AuditRows: 3}, n)

		for _, table := range tables {
			rows, err := dbscan.Mentions(ctx, raw, table, alice, aliceMX)
			require.NoError(t, err)
			assert.Emptyf(t, rows, "%s still names alice after erasure", table)
		}
		// Bob is untouched.
		_, err = db.GetCredential(ctx, bob)
		require.NoError(t, err)
		state, err := db.GetResumeState(ctx, bob)
		require.NoError(t, err)
		assert.NotEmpty(t, state)
		peers, err := db.OutboxPeers(ctx, bob)
		require.NoError(t, err)
		assert.Len(t, peers, 1)
		p, err := db.GetPerson(ctx, bob)
		require.NoError(t, err)
		assert.Equal(t, "coexistence", p.Mode)
		_, err = db.GetPerson(ctx, alice)
		assert.ErrorIs(t, err, ErrNotFound)
		newGen, err := db.ModeGeneration(ctx)
		require.NoError(t, err)
		assert.Greater(t, newGen, gen, "other processes would keep alice's mode")

		// The audit lost nothing and gained the erasure's record; every
		// row that named alice names her pseudonym instead.
		auditAfter, err := db.ListAudit(ctx, "", MaxAuditList)
		require.NoError(t, err)
		require.Len(t, auditAfter, len(auditBefore)+1)
		erased := auditAfter[0]
		assert.Equal(t, AuditErased, erased.Action)
		assert.Equal(t, testPseudonym(alice), erased.LoginID)
		assert.Equal(t, testPseudonym(aliceMX), erased.MatrixUser)
		assert.Equal(t, "@admin:example.org", erased.Actor)
		assert.Equal(t, "192.0.2.7", erased.Origin)
		pseudonymous, err := db.ListAudit(ctx, testPseudonym(alice), 10)
		require.NoError(t, err)
		assert.Equal(t, []string{AuditErased, AuditLoginFailed, AuditLogin}, []string{pseudonymous[0].Action, pseudonymous[1].Action, pseudonymous[2].Action})
		assert.Equal(t, "SfB refused sip:"+testPseudonym(alice)+" (401)", pseudonymous[1].Detail)
		byAlice := auditAfter[1]
		assert.Equal(t, AuditPersonModeSet, byAlice.Action)
		assert.Equal(t, testPseudonym(aliceMX), byAlice.Actor)
		assert.Equal(t, bob, byAlice.LoginID, "bob's row lost his address")
		bobRows, err := db.ListAudit(ctx, bob, 10)
		require.NoError(t, err)
		assert.Len(t, bobRows, 3)

		// Erasing again finds nothing more and still records the request.
		n, err = db.ErasePerson(ctx, Erasure{Address: alice, MatrixUser: aliceMX, Pseudonym: testPseudonym, Record: AuditEvent{Actor: "@admin:example.org"}})
		require.NoError(t, err)
		assert.Equal(t, Erased{}, n)
		again, err := db.ListAudit(ctx, testPseudonym(alice), 10)
		require.NoError(t, err)
		assert.Len(t, again, len(pseudonymous)+1)
	})
}

// auditWrite matches SQL that changes or removes audit rows.
var auditWrite = regexp.MustCompile(`(?is)\b(update\s+sfb_audit|delete\s+from\s+sfb_audit|truncate\s+(table\s+)?sfb_audit|insert\s+or\s+replace\s+into\s+sfb_audit|on\s+conflict.*sfb_audit)\b`)

// TestAuditIsAppendOnly reads every Go file of the module: only
// anonymiseAudit (erasure) may change or delete audit rows.
func TestAuditIsAppendOnly(t *testing.T) {
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	var writers []string
	err = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		file, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
		if err != nil {
			return err
		}
		for _, decl := range file.Decls {
			ast.Inspect(decl, func(n ast.Node) bool {
				lit, ok := n.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					return true
				}
				text, err := strconv.Unquote(lit.Value)
				if err == nil && auditWrite.MatchString(text) {
					name := "?"
					if fn, ok := decl.(*ast.FuncDecl); ok {
						name = fn.Name.Name
					}
					rel, _ := filepath.Rel(root, path)
					writers = append(writers, rel+":"+name)
				}
				return true
			})
		}
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, []string{"database/erase.go:anonymiseAudit"}, writers)
}

func TestReplaceFold(t *testing.T) {
	for in, want := range map[string]string{
		"sip:Alice@Contoso.com and alice@contoso.com": "sip:X and X",
		"nothing here":                       "nothing here",
		"ALICE@CONTOSO.COMALICE@CONTOSO.COM": "XX",
	} {
		assert.Equal(t, want, replaceFold(in, "alice@contoso.com", "X"))
	}
}
