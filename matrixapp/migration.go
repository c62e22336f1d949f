package matrixapp

import (
	"context"
	"net/http"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/bridgev2/matrix/mxmain"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge"
	bridgemetrics "github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/metrics"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/matrixapp/dashboard"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/matrixapp/migrationapi"
)

// serveMigrationAPI adds the migration team's API to the appservice
// listener. It is always behind authentication: the provisioning shared
// secret (when set and long enough) or a bridge admin's access token.
func serveMigrationAPI(m *mxmain.BridgeMain) {
	conn, ok := m.Connector.(*bridge.Connector)
	if !ok || m.Matrix == nil {
		return
	}
	log := m.Log.With().Str("component", "migration api").Logger()
	secret := m.Config.Provisioning.SharedSecret
	if len(secret) < migrationapi.MinSecretLength { // "disable" included
		log.Info().Msg("Migration API: no usable provisioning shared secret; only bridge admins' access tokens are accepted")
	}
	auth := migrationapi.NewAuth(secret, func(user id.UserID) bool {
		return m.Bridge.Config.Permissions.Get(user).Admin
	}, homeserverWhoami(m.Config.Homeserver.Address, m.Matrix.AS.HTTPClient))
	api := migrationapi.New(conn.Migration, auth, log)
	mux := http.NewServeMux()
	api.Register(mux)
	api.RegisterErasure(mux, conn)
	m.Matrix.AS.Router.Handle(migrationapi.Prefix+"/", noticeFailedModeChanges(mux, conn.ModeChangeFailed))
	serveDashboard(m, conn, auth)
}

// serveDashboard adds the migration team's page beside the API, behind the
// same authentication.
func serveDashboard(m *mxmain.BridgeMain, conn *bridge.Connector, auth *migrationapi.Auth) {
	log := m.Log.With().Str("component", "dashboard").Logger()
	d, err := dashboard.New(dashboard.Options{Service: conn.Migration, Auth: auth, Activity: activityOf(conn.Metrics()), Log: log})
	if err != nil {
		log.Error().Err(err).Msg("Dashboard not served")
		return
	}
	dmux := http.NewServeMux()
	d.Register(dmux)
	// A mode change made on the page that fails is told to the admins
	// as one made through the API.
	page := noticeFailedModeChanges(dmux, conn.ModeChangeFailed)
	m.Matrix.AS.Router.Handle(dashboard.Prefix, page)
	m.Matrix.AS.Router.Handle(dashboard.Prefix+"/", page)
}

// homeserverWhoami asks the homeserver whose access token a request
// carries.
func homeserverWhoami(homeserver string, client *http.Client) migrationapi.Whoami {
	return func(ctx context.Context, token string) (id.UserID, error) {
		cli, err := mautrix.NewClient(homeserver, "", token)
		if err != nil {
			return "", err
		}
		if client != nil {
			cli.Client = client
		}
		resp, err := cli.Whoami(ctx)
		if err != nil {
			return "", err
		}
		return resp.UserID, nil
	}
}

// activityOf shows on the dashboard, per whole minute, the messages
// bridged and presence changes carried, both ways, as the metrics count
// them (docs/metrics.md).
func activityOf(m *bridgemetrics.Metrics) dashboard.ActivityFunc {
	return func(n int) []dashboard.Minute {
		all := m.Minutes()
		if len(all) == 0 {
			return nil
		}
		whole := all[:len(all)-1] // the last one is still running
		whole = whole[max(0, len(whole)-n):]
		out := make([]dashboard.Minute, 0, len(whole))
		for _, b := range whole {
			out = append(out, dashboard.Minute{
				Start:           b.Start,
				Messages:        uint64(b.MessagesToMatrix + b.MessagesToSfB),
				PresenceUpdates: uint64(b.PresenceToMatrix + b.PresenceToSfB),
			})
		}
		return out
	}
}
