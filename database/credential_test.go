package database

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/secret"
)

func TestCredentialCRUD(t *testing.T) {
	upgraded(t, func(t *testing.T, raw *sql.DB, db *DB) {
		ctx := context.Background()
		expiry := time.Date(2030, 5, 6, 7, 8, 9, 123_456_789, time.UTC)
		updated := time.Date(2030, 5, 6, 0, 0, 0, 999_000_000, time.UTC)

		for _, tc := range []struct {
			name string
			in   Credential
		}{
			{"everything", Credential{
				LoginID: "alice@contoso.com", SignInAddress: "Alice@Contoso.com", Username: `CONTOSO\alice`,
				Password: []byte{1, 0, 255, 0, 7}, Token: []byte{1, 2, 3}, TokenExpiry: expiry, UpdatedAt: updated,
			}},
			{"password not kept, no token", Credential{
				LoginID: "bob@contoso.com", SignInAddress: "bob@contoso.com", UpdatedAt: updated,
			}},
			{"empty slices mean none", Credential{
				LoginID: "carol@contoso.com", SignInAddress: "carol@contoso.com",
				Password: []byte{}, Token: []byte{}, UpdatedAt: updated,
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				require.NoError(t, db.PutCredential(ctx, tc.in))
				got, err := db.GetCredential(ctx, tc.in.LoginID)
				require.NoError(t, err)
				assert.Equal(t, tc.in.LoginID, got.LoginID)
				assert.Equal(t, tc.in.SignInAddress, got.SignInAddress)
				assert.Equal(t, tc.in.Username, got.Username)
				if len(tc.in.Password) == 0 {
					assert.Nil(t, got.Password)
				} else {
					assert.Equal(t, tc.in.Password, got.Password)
				}
				if len(tc.in.Token) == 0 {
					assert.Nil(t, got.Token)
				} else {
					assert.Equal(t, tc.in.Token, got.Token)
				}
				if tc.in.TokenExpiry.IsZero() {
					assert.True(t, got.TokenExpiry.IsZero(), "expiry %v", got.TokenExpiry)
				} else {
					assert.True(t, tc.in.TokenExpiry.Truncate(time.Millisecond).Equal(got.TokenExpiry), "expiry %v", got.TokenExpiry)
				}
				assert.True(t, tc.in.UpdatedAt.Equal(got.UpdatedAt), "updated %v", got.UpdatedAt)
			})
		}

		// An upsert replaces every field, including clearing the secrets.
		require.NoError(t, db.PutCredential(ctx, Credential{
			LoginID: "alice@contoso.com", SignInAddress: "alice@contoso.com", Username: "alice",
		}))
		got, err := db.GetCredential(ctx, "alice@contoso.com")
		require.NoError(t, err)
		assert.Equal(t, "alice@contoso.com", got.SignInAddress)
		assert.Equal(t, "alice", got.Username)
		assert.Nil(t, got.Password)
		assert.Nil(t, got.Token)
		assert.True(t, got.TokenExpiry.IsZero())
		assert.WithinDuration(t, time.Now(), got.UpdatedAt, time.Minute, "zero UpdatedAt not set to now")

		// Lookups are exact and other rows are untouched.
		_, err = db.GetCredential(ctx, "ALICE@contoso.com")
		assert.ErrorIs(t, err, ErrNotFound)
		bob, err := db.GetCredential(ctx, "bob@contoso.com")
		require.NoError(t, err)
		assert.Equal(t, "bob@contoso.com", bob.SignInAddress)

		require.NoError(t, db.DeleteCredential(ctx, "alice@contoso.com"))
		_, err = db.GetCredential(ctx, "alice@contoso.com")
		assert.ErrorIs(t, err, ErrNotFound)
		assert.Contains(t, err.Error(), "alice@contoso.com")
		require.NoError(t, db.DeleteCredential(ctx, "alice@contoso.com"), "deleting twice")
		_, err = db.GetCredential(ctx, "bob@contoso.com")
		require.NoError(t, err, "delete removed another row")
	})
}

func TestPutCredentialValidates(t *testing.T) {
	upgraded(t, func(t *testing.T, raw *sql.DB, db *DB) {
		ctx := context.Background()
		for _, tc := range []struct {
			name string
			in   Credential
		}{
			{"no login ID", Credential{SignInAddress: "a@contoso.com"}},
			{"no sign-in address", Credential{LoginID: "a@contoso.com"}},
		} {
			assert.Errorf(t, db.PutCredential(ctx, tc.in), tc.name)
		}
		var n int
		require.NoError(t, raw.QueryRow(`SELECT COUNT(*) FROM sfb_credential`).Scan(&n))
		assert.Zero(t, n)
	})
}

// The intended use: the caller seals with the login ID as associated data,
// so a sealed password copied into another login's row does not open.
func TestSealedCredentialIsBoundToItsRow(t *testing.T) {
	upgraded(t, func(t *testing.T, raw *sql.DB, db *DB) {
		ctx := context.Background()
		key, err := secret.GenerateKey()
		require.NoError(t, err)
		box, err := secret.NewBox(key)
		require.NoError(t, err)
		sealed, err := box.Seal([]byte("hunter2"), []byte("alice@contoso.com"))
		require.NoError(t, err)
		require.NoError(t, db.PutCredential(ctx, Credential{LoginID: "alice@contoso.com", SignInAddress: "alice@contoso.com", Password: sealed}))
		require.NoError(t, db.PutCredential(ctx, Credential{LoginID: "mallory@contoso.com", SignInAddress: "mallory@contoso.com"}))

		_, err = raw.Exec(`UPDATE sfb_credential SET password = (SELECT password FROM sfb_credential WHERE login_id = $1) WHERE login_id = $2`,
			"alice@contoso.com", "mallory@contoso.com")
		require.NoError(t, err)

		alice, err := db.GetCredential(ctx, "alice@contoso.com")
		require.NoError(t, err)
		plain, err := box.Open(alice.Password, []byte(alice.LoginID))
		require.NoError(t, err)
		assert.Equal(t, "hunter2", string(plain))

		mallory, err := db.GetCredential(ctx, "mallory@contoso.com")
		require.NoError(t, err)
		require.Equal(t, alice.Password, mallory.Password, "copy did not happen")
		_, err = box.Open(mallory.Password, []byte(mallory.LoginID))
		assert.ErrorIs(t, err, secret.ErrOpen)
	})
}
