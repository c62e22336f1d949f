package migration

import (
	"context"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPeopleFindsByTextAndStatusErrorsFirst(t *testing.T) {
	ctx := context.Background()
	logins := map[string]Login{
		"bob@contoso.com": {Status: LoginError, State: "BAD_CREDENTIALS", Error: "sfb-password-wrong"},
	}
	s := New(newDB(t), zerolog.Nop(), Options{Logins: func(a string) Login {
		if l, ok := logins[a]; ok {
			return l
		}
		return Login{Status: LoginNone}
	}})
	_, err := s.Import(ctx, []byte(wave1), false, lead)
	require.NoError(t, err)

	addresses := func(q PeopleQuery) ([]string, int) {
		t.Helper()
		people, total, err := s.People(ctx, q)
		require.NoError(t, err)
		var out []string
		for _, p := range people {
			out = append(out, p.Address)
		}
		return out, total
	}
	all, total := addresses(PeopleQuery{})
	require.Equal(t, 3, total)
	assert.Equal(t, "bob@contoso.com", all[0], "people in error come first")

	got, total := addresses(PeopleQuery{Text: "PASSWORD-wrong"})
	assert.Equal(t, []string{"bob@contoso.com"}, got, "the last error is searched, ignoring case")
	assert.Equal(t, 1, total)
	got, _ = addresses(PeopleQuery{Status: LoginError})
	assert.Equal(t, []string{"bob@contoso.com"}, got)
	got, total = addresses(PeopleQuery{Limit: 1})
	assert.Len(t, got, 1)
	assert.Equal(t, 3, total, "the count is of every match")
	got, _ = addresses(PeopleQuery{Text: "nobody"})
	assert.Empty(t, got)
}
