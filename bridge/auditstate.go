package bridge

import (
	"context"
	"sync"
	"time"

	"maunium.net/go/mautrix/bridgev2/status"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/database"
)

// stateAudit remembers the login state last written to the audit log, so
// that the log gets changes, not every repetition (a flapping connection
// sends CONNECTED again and again).
type stateAudit struct {
	mu   sync.Mutex
	last string
}

// auditStateTimeout bounds the audit write of a state change, which must
// not hold up the connection that changed state.
const auditStateTimeout = 5 * time.Second

// auditState records a change of the login's bridge state: which state,
// with the error code (the message is for the user and may quote SfB).
func (c *Client) auditState(state status.BridgeState) {
	detail := string(state.StateEvent)
	if state.Error != "" {
		detail += ": " + string(state.Error)
	}
	c.states.mu.Lock()
	changed := c.states.last != detail
	c.states.last = detail
	c.states.mu.Unlock()
	if !changed || c.conn.db == nil {
		return
	}
	ctx, cancel := context.WithTimeout(c.conn.backgroundCtx(), auditStateTimeout)
	defer cancel()
	c.conn.audit(ctx, c.loginID, c.login.UserMXID, database.AuditLoginState, detail)
}
