package sim

import "github.com/emiago/sipgo/sip"

// serveSIPPresence handles SUBSCRIBE, PUBLISH, SERVICE, NOTIFY and
// BENOTIFY from an authenticated endpoint of from (presence over SIP:
// MS-PRES). Not implemented yet: 501, which pidgin-sipe tolerates.
func (s *Server) serveSIPPresence(sc *sipConn, req *sip.Request, from *user) {
	_ = from
	sc.respond(req, sip.StatusNotImplemented, "Not Implemented", nil)
}
