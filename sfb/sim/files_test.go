package sim_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

func TestControlSendsSamplesPicturesAndRTF(t *testing.T) {
	e := newEnv(t, sim.Options{})
	post := func(body string) resp {
		return e.do("POST", "/sim/v1/users/bob@contoso.com/messages", "", "application/json", body)
	}
	received := func() []sim.Received { return e.sim.Received("sip:alice@contoso.com") }

	r := e.do("GET", "/sim/v1/samples", "", "", "")
	require.Equal(t, http.StatusOK, r.status)
	assert.Contains(t, r.json(t)["samples"], "sfb2016-bold-italic-colour")
	assert.Equal(t, len(sim.Samples()), len(r.json(t)["samples"].([]any)))

	// A sample by name: its HTML exactly, the plain form derived.
	require.Equal(t, http.StatusNoContent, post(`{"to":"sip:alice@contoso.com","sample":"sfb2016-bold-italic-colour"}`).status)
	want, err := sim.Sample("sfb2016-bold-italic-colour")
	require.NoError(t, err)
	require.Len(t, received(), 1)
	assert.Equal(t, want, received()[0].Message.HTML)
	assert.Equal(t, "Deadline is Friday, not Monday.", received()[0].Message.Text)

	// A pasted picture: inline as a data: URI after the text.
	pic := []byte("\x89PNG\r\n\x1a\nnot really")
	r = post(`{"to":"sip:alice@contoso.com","text":"look","image":{"content_type":"image/png","data":"` + base64.StdEncoding.EncodeToString(pic) + `"}}`)
	require.Equal(t, http.StatusNoContent, r.status, "%s", r.body)
	require.Len(t, received(), 2)
	assert.Contains(t, received()[1].Message.HTML, `<img src="data:image/png;base64,`+base64.StdEncoding.EncodeToString(pic)+`">`)
	assert.Equal(t, "look", strings.TrimSpace(received()[1].Message.Text))

	// RTF never reaches a UCWA endpoint: its plain alternative does.
	require.Equal(t, http.StatusNoContent, post(`{"to":"sip:alice@contoso.com","text":"Plain form","rtf":"{\\rtf1\\ansi {\\b Plain} form}"}`).status)
	require.Len(t, received(), 3)
	assert.Equal(t, sfb.Message{Text: "Plain form"}, received()[2].Message)

	for _, tc := range []struct{ body, wantErr string }{
		{`{"to":"sip:alice@contoso.com","rtf":"{\\rtf1 x}"}`, "plain-text alternative"},
		{`{"to":"sip:alice@contoso.com","sample":"../sim"}`, "sample"},
		{`{"to":"sip:alice@contoso.com","sample":"sfb2015-font-tags","html":"<b>x</b>"}`, "one of them"},
		{`{"to":"sip:alice@contoso.com","image":{"content_type":"text/html","data":"AAAA"}}`, "image.content_type"},
		{`{"to":"sip:alice@contoso.com","image":{"content_type":"image/png","data":"%%"}}`, "image.data"},
	} {
		r := post(tc.body)
		assert.Contains(t, []int{http.StatusBadRequest, http.StatusNotFound}, r.status, tc.body)
		assert.Contains(t, string(r.body), tc.wantErr, tc.body)
	}
	assert.Equal(t, http.StatusNotFound, post(`{"to":"sip:alice@contoso.com","sample":"no-such-sample"}`).status)
	assert.Len(t, received(), 3, "nothing sent for a bad request")
}

func TestFileTransferReachesOnlyNativeClients(t *testing.T) {
	e := newEnv(t, sim.Options{})
	post := func(body string) resp {
		return e.do("POST", "/sim/v1/users/bob@contoso.com/file-transfers", "", "application/json", body)
	}
	alice := e.signIn("alice@contoso.com", "alice-pw")
	alice.makeMeAvailable()

	// Alice's native client takes the file; her UCWA application sees
	// nothing of it (UCWA has no file-transfer modality).
	require.Equal(t, http.StatusNoContent, post(`{"to":"sip:alice@contoso.com","name":"report.pdf","size":1234}`).status)
	r := e.do("GET", "/sim/v1/users/alice@contoso.com/file-transfers", "", "", "")
	require.Equal(t, http.StatusOK, r.status)
	var got []map[string]any
	require.NoError(t, json.Unmarshal(r.body, &got))
	require.Len(t, got, 1)
	assert.Equal(t, "report.pdf", got[0]["name"])
	assert.Equal(t, float64(1234), got[0]["size"])
	assert.Equal(t, "sip:bob@contoso.com", got[0]["from"])

	// With only UCWA applications, nobody can take it: the sender's
	// client is told so.
	require.NoError(t, e.sim.SetNativeClient("sip:alice@contoso.com", false))
	r = post(`{"to":"sip:alice@contoso.com","name":"second.pdf","size":10}`)
	assert.Equal(t, http.StatusConflict, r.status)
	assert.Contains(t, string(r.body), "UCWA applications cannot receive files")
	assert.Len(t, e.sim.FileTransfers("sip:alice@contoso.com"), 1)
	_, evs := alice.poll()
	for _, ev := range evs {
		assert.NotContains(t, ev.rel, "file", "no event of a file transfer reaches the application")
	}

	for _, body := range []string{
		`{"to":"sip:alice@contoso.com","name":"","size":10}`,
		`{"to":"sip:alice@contoso.com","name":"C:\\x.pdf","size":10}`,
		`{"to":"sip:alice@contoso.com","name":"x.pdf","size":0}`,
	} {
		assert.Equal(t, http.StatusBadRequest, post(body).status, body)
	}
	assert.ErrorIs(t, e.sim.OfferFile(context.Background(), "sip:bob@contoso.com", "sip:nobody@contoso.com", "x", 1), sfb.ErrNotFound)
}
