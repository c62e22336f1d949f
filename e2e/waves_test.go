package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/matrixapp/migrationapi"
)

// wavesAdmin is the migration team's member, a bridge admin in the
// e2e configuration.
const wavesAdmin = id.UserID("@wavesadmin:localhost")

// migrationAPI calls the migration API on the running bridge with token.
func migrationAPI(t *testing.T, env *testEnv, method, path, token, body string, out any) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hop)
	defer cancel()
	status, data := bearerRequest(t, ctx, method, env.st.Bridge.URL()+migrationapi.Prefix+path, token, body)
	if out != nil && status == http.StatusOK {
		require.NoError(t, json.Unmarshal(data, out), string(data))
	}
	return status
}

type waveReply struct {
	Name     string         `json:"name"`
	Mode     string         `json:"mode"`
	Assigned int            `json:"assigned"`
	ByMode   map[string]int `json:"by_mode"`
	People   []struct {
		Address string `json:"sip_address"`
		Mode    string `json:"mode"`
	} `json:"people"`
}

// The migration team imports a wave through the API with an admin's
// Matrix access token (checked against Synapse), reads it back, and works
// with it through the bot's commands in the admin's management room:
// shows it, sets its mode, imports a second file sent as an attachment.
func TestWaveImportThroughAPIAndAdminCommands(t *testing.T) {
	env := setup(t)
	admin := env.newPairSignedOut(t, "wavesadmin")
	require.Equal(t, wavesAdmin, admin.mx.ID)
	member := env.newPairSignedOut(t, "wavesmember")

	csv := "\uFEFFSIP-Adresse;Matrix-ID;Welle;Modus\r\n" +
		"anna.e2e@contoso.com;@anna.e2e:localhost;E2E Welle 1;\r\n" +
		"ben.e2e@contoso.com;@ben.e2e:localhost;E2E Welle 1;matrix_only\r\n"

	// A Matrix user who is no bridge admin gets nothing, nor does a
	// wrong secret.
	assert.Equal(t, http.StatusUnauthorized, migrationAPI(t, env, "POST", "/import?dry_run=false", member.mx.Client.AccessToken, csv, nil))
	assert.Equal(t, http.StatusUnauthorized, migrationAPI(t, env, "GET", "/waves", env.st.ProvisioningSecret+"x", "", nil))

	var report struct {
		DryRun  bool `json:"dry_run"`
		Applied bool `json:"applied"`
		New     int  `json:"new_people"`
	}
	require.Equal(t, http.StatusOK, migrationAPI(t, env, "POST", "/import?dry_run=true", admin.mx.Client.AccessToken, csv, &report))
	assert.Equal(t, 2, report.New)
	assert.False(t, report.Applied)
	assert.Equal(t, http.StatusNotFound, migrationAPI(t, env, "GET", "/waves/E2E%20Welle%201", env.st.ProvisioningSecret, "", nil), "the dry run created the wave")
	require.Equal(t, http.StatusOK, migrationAPI(t, env, "POST", "/import?dry_run=false", admin.mx.Client.AccessToken, csv, &report))
	assert.True(t, report.Applied)

	var wave waveReply
	require.Equal(t, http.StatusOK, migrationAPI(t, env, "GET", "/waves/E2E%20Welle%201", env.st.ProvisioningSecret, "", &wave))
	assert.Equal(t, 2, wave.Assigned)
	assert.Equal(t, map[string]int{"sfb_only": 1, "coexistence": 0, "matrix_only": 1}, wave.ByMode)

	ctx, cancel := context.WithTimeout(context.Background(), 3*hop)
	defer cancel()
	command := func(text, what string, match func(string) bool) string {
		t.Helper()
		from := admin.mx.mark()
		_, err := admin.mx.Client.SendText(ctx, admin.mgmt, text)
		require.NoError(t, err)
		return admin.mx.waitFor(from, hop, what, isMessage(admin.mgmt, env.st.Bot, match)).Content.AsMessage().Body
	}
	shown := command("wave show E2E Welle 1", "the bot to show the wave", func(b string) bool { return strings.Contains(b, "E2E Welle 1") })
	assert.Contains(t, shown, "2 people (1 sfb_only, 0 coexistence, 1 matrix_only)")
	assert.Contains(t, shown, "anna.e2e@contoso.com")

	set := command("mode set wave E2E Welle 1 coexistence", "the bot to set the wave's mode", func(b string) bool { return strings.Contains(b, "now has mode") })
	assert.Contains(t, set, "1 coexistence, 1 matrix_only")
	require.Equal(t, http.StatusOK, migrationAPI(t, env, "GET", "/waves/E2E%20Welle%201", admin.mx.Client.AccessToken, "", &wave))
	assert.Equal(t, "coexistence", wave.Mode)

	// A second wave from a file sent to the management room.
	command("import", "the bot to ask for the file", func(b string) bool { return strings.Contains(b, "Send the CSV file") })
	upload, err := admin.mx.Client.UploadBytes(ctx, []byte("sip_address,matrix_id,wave\ncarla.e2e@contoso.com,@carla.e2e:localhost,E2E Welle 2\n"), "text/csv")
	require.NoError(t, err)
	from := admin.mx.mark()
	_, err = admin.mx.Client.SendMessageEvent(ctx, admin.mgmt, event.EventMessage, &event.MessageEventContent{
		MsgType: event.MsgFile, Body: "welle2.csv", URL: upload.ContentURI.CUString(),
		Info: &event.FileInfo{MimeType: "text/csv", Size: 80},
	})
	require.NoError(t, err)
	checked := admin.mx.waitFor(from, hop, "the bot's dry run", isMessage(admin.mgmt, env.st.Bot, func(b string) bool { return strings.Contains(b, "Checked") })).Content.AsMessage().Body
	assert.Contains(t, checked, "1 row, 0 bad; 1 new person")
	command("confirm", "the bot to import", func(b string) bool { return strings.Contains(b, "Imported") })

	var person struct {
		Wave string `json:"wave"`
		Mode string `json:"mode"`
	}
	require.Equal(t, http.StatusOK, migrationAPI(t, env, "GET", "/people/carla.e2e@contoso.com", env.st.ProvisioningSecret, "", &person))
	assert.Equal(t, "E2E Welle 2", person.Wave)
	assert.Equal(t, "sfb_only", person.Mode)

	var audit struct {
		Entries []struct {
			Action string `json:"action"`
			Actor  string `json:"actor"`
			Origin string `json:"origin"`
		} `json:"entries"`
	}
	require.Equal(t, http.StatusOK, migrationAPI(t, env, "GET", "/audit?limit=10000", env.st.ProvisioningSecret, "", &audit))
	var mine []string
	for _, e := range audit.Entries {
		if e.Actor == string(wavesAdmin) {
			mine = append(mine, e.Action+" from "+strings.SplitN(e.Origin, " ", 2)[0])
		}
	}
	assert.Equal(t, []string{"import from management", "import_dry_run from management", "wave_mode_set from management", "import from 127.0.0.1", "import_dry_run from 127.0.0.1"}, mine,
		fmt.Sprintf("audit: %+v", audit.Entries))
}
