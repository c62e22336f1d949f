package bridge

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"

	"maunium.net/go/mautrix/id"
)

// dropOwnPresence is appservice middleware that removes from a transaction
// the m.presence of the bridge's own users (ghosts, the bot) before
// mautrix parses it. Synapse sends back every presence the bridge writes
// to a ghost; in a presence storm that is thousands of events a second,
// each queued in the appservice's event channel in front of the messages
// of the same transactions, only for handleMatrixPresence to skip it.
func dropOwnPresence(own func(id.UserID) bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPut && r.Body != nil && strings.HasPrefix(r.URL.Path, transactionPath) {
				body, err := io.ReadAll(r.Body)
				if err != nil {
					http.Error(w, "reading the transaction failed", http.StatusBadRequest)
					return
				}
				body = withoutOwnPresence(body, own)
				r.Body = io.NopCloser(bytes.NewReader(body))
				r.ContentLength = int64(len(body))
			}
			next.ServeHTTP(w, r)
		})
	}
}

// ephemeralKeys are where a transaction carries ephemeral events: the
// stable name and MSC2409's, which Synapse still sends.
var ephemeralKeys = [...]string{"ephemeral", "de.sorunome.msc2409.ephemeral"}

// withoutOwnPresence returns body without the m.presence events whose
// sender own reports, or body itself when it has none or cannot be read
// (mautrix then answers it as it would have).
func withoutOwnPresence(body []byte, own func(id.UserID) bool) []byte {
	if !bytes.Contains(body, []byte(`"m.presence"`)) {
		return body
	}
	var txn map[string]json.RawMessage
	if json.Unmarshal(body, &txn) != nil {
		return body
	}
	dropped := false
	for _, key := range ephemeralKeys {
		raw, ok := txn[key]
		if !ok {
			continue
		}
		var events []json.RawMessage
		if json.Unmarshal(raw, &events) != nil {
			return body
		}
		kept := events[:0]
		for _, evt := range events {
			var head struct {
				Type   string    `json:"type"`
				Sender id.UserID `json:"sender"`
			}
			if json.Unmarshal(evt, &head) == nil && head.Type == "m.presence" && own(head.Sender) {
				dropped = true
				continue
			}
			kept = append(kept, evt)
		}
		if raw, err := json.Marshal(kept); err == nil {
			txn[key] = raw
		}
	}
	if !dropped {
		return body
	}
	out, err := json.Marshal(txn)
	if err != nil {
		return body
	}
	return out
}
