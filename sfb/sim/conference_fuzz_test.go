package sim

import (
	"encoding/json"
	"testing"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// FuzzAddParticipantBody: an addParticipant body is refused, or it names
// a valid address and an operation ID within the reference's bound.
func FuzzAddParticipantBody(f *testing.F) {
	for _, b := range []string{
		`{"operationId":"74cb7404e0a247d5a2d4eb0376a47dbf","to":"sip : john@contoso.com"}`,
		`{"to":"sip:carol@contoso.com"}`, `{"to":""}`, `{"to":"tel:+1"}`, `{"to":"sip:a@b","operationId":"` + string(make([]byte, 51)) + `"}`,
	} {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var req addParticipantRequest
		if json.Unmarshal(data, &req) != nil {
			return
		}
		to, err := req.validate()
		if err != nil {
			return
		}
		if _, err := sfb.ParseURI(string(to)); err != nil {
			t.Fatalf("accepted %q as %q: %v", req.To, to, err)
		}
		if len(req.OperationID) > 50 {
			t.Fatalf("accepted an operationId of %d characters", len(req.OperationID))
		}
	})
}
