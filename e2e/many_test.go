package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

// delivery is how long one message may take once everybody is signed in:
// a few seconds, with room for the race detector on a busy machine.
const delivery = 10 * time.Second

// TestManyLoginsAtOnce signs a wave of 200 users in through the
// provisioning API, 16 at a time, as a migration portal does, and then
// has a few users log in after them and chat both ways while the whole
// wave stays signed in. When the UCWA client capped connections for all
// users together, every sign-in after about 36 failed after 30 s with
// "The Skype for Business server is not reachable right now" while the
// simulator was idle.
func TestManyLoginsAtOnce(t *testing.T) {
	env := setup(t)
	const n, parallel = 200, 16
	wave := make([]sim.User, n)
	for i := range wave {
		wave[i] = sim.User{URI: sfb.URI(fmt.Sprintf("sip:wave%03d@contoso.com", i+1)), DisplayName: fmt.Sprintf("Wave %03d", i+1), Password: fmt.Sprintf("wave-%03d-password", i+1)}
		require.NoError(t, env.sim.AddUser(wave[i]))
	}
	mxid := func(i int) id.UserID { return id.NewUserID(fmt.Sprintf("wave%03d", i+1), env.st.HS.ServerName) }
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	start := time.Now()
	errs := make([]error, n)
	forEach(n, parallel, func(i int) {
		_, errs[i] = env.st.ProvisionLogin(ctx, mxid(i), wave[i].URI.Address(), wave[i].Password)
	})
	t.Logf("%d logins through the provisioning API in %s", n, time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		forEach(n, parallel, func(i int) {
			if err := env.st.ProvisionLogout(ctx, mxid(i)); err != nil {
				t.Errorf("log %s out: %v", mxid(i), err)
			}
		})
	})
	var failed []string
	for i, err := range errs {
		if err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", wave[i].URI.Address(), err))
		}
	}
	require.Empty(t, failed, "%d of %d logins failed", len(failed), n)
	for _, u := range wave {
		assert.Equal(t, 1, env.sim.Applications(u.URI), "%s has one UCWA application", u.URI)
	}

	// Late comers log in through the bot, receive and answer while the
	// wave holds its event channels.
	for _, name := range []string{"late1", "late2", "late3"} {
		p := env.newPair(t, name)
		room := env.openPortal(t, p, "welcome, "+name)

		from := p.mx.mark()
		sent := time.Now()
		text := "are you there, " + name + "?"
		require.NoError(t, env.sim.SendMessage(ctx, p.colleague.URI, p.self.URI, sfb.Message{Text: text}))
		p.mx.waitFor(from, delivery, "the colleague's message", isMessage(room, p.ghost, equals(text)))
		toMatrix := time.Since(sent)

		sent = time.Now()
		answer := name + " is here"
		_, err := p.mx.Client.SendText(ctx, room, answer)
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			for _, r := range env.sim.Received(p.colleague.URI) {
				if r.From == p.self.URI && r.Message.Text == answer {
					return true
				}
			}
			return false
		}, delivery, 20*time.Millisecond, "%s's answer reaches SfB", name)
		t.Logf("%s: SfB -> Matrix in %s, Matrix -> SfB in %s", name, toMatrix.Round(time.Millisecond), time.Since(sent).Round(time.Millisecond))
	}
}

// forEach runs f for 0..n-1, parallel at a time.
func forEach(n, parallel int, f func(i int)) {
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			f(i)
		})
	}
	wg.Wait()
}
