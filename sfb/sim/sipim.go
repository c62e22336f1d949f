package sim

import "github.com/emiago/sipgo/sip"

// serveSIPIM handles the requests of instant messaging from an
// authenticated endpoint of from.
func (s *Server) serveSIPIM(sc *sipConn, req *sip.Request, from *user) {
	_ = from
	if req.Method == sip.ACK {
		return
	}
	sc.respond(req, sip.StatusNotImplemented, "Not Implemented", nil)
}

// sipEndpointGone ends what the endpoint of r took part in (under s.mu).
func (s *Server) sipEndpointGone(r *sipReg) {}
