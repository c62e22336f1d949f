package sip

import (
	"fmt"
	"slices"
	"strings"

	sipmsg "github.com/emiago/sipgo/sip"
)

// Dialog is a SIP dialog of the endpoint (RFC 3261 12): an IM
// conversation (INVITE) or a subscription (SUBSCRIBE); pidgin-sipe's
// struct sip_dialog. It is not safe for concurrent use: its owner (im.go's
// conversation, presence.go's subscription) locks it.
type Dialog struct {
	CallID    string
	LocalTag  string
	RemoteTag string
	// RemoteEPID is the peer's epid (the epid parameter of its From), put
	// back into To as SfB clients do.
	RemoteEPID string
	// Peer is the peer's URI ("sip:bob@contoso.com"): To of our requests.
	Peer string
	// RemoteTarget is the peer's Contact, the Request-URI of requests in
	// the dialog; empty until known (then Peer is used).
	RemoteTarget string
	// Routes is the route set, in the order our requests carry them.
	Routes []string
	// LocalCSeq numbers our requests in the dialog; RemoteCSeq is the
	// highest of the peer's seen.
	LocalCSeq  uint32
	RemoteCSeq uint32
}

// newDialog starts a dialog with peer that the endpoint initiates (UAC).
func (s *Session) newDialog(peer string) *Dialog {
	return &Dialog{CallID: newCallID(), LocalTag: newTag(), Peer: peer}
}

// dialogFromRequest is the dialog a request from the server starts (an
// INVITE or SUBSCRIBE to the endpoint; UAS side): Call-ID, the peer's tag,
// epid, URI and Contact, and the route set from Record-Route. It gives the
// request's To a tag of ours when it has none, so that every response to
// it (respond copies To) carries the dialog's local tag.
func (s *Session) dialogFromRequest(req *sipmsg.Request) (*Dialog, error) {
	from, to := req.From(), req.To()
	if from == nil || to == nil || req.CallID() == nil || req.CSeq() == nil {
		return nil, fmt.Errorf("%s without From, To, Call-ID or CSeq", req.Method)
	}
	d := &Dialog{CallID: req.CallID().Value(), Peer: uriString(from.Address), RemoteCSeq: req.CSeq().SeqNo}
	d.RemoteTag, _ = from.Params.Get("tag")
	d.RemoteEPID, _ = from.Params.Get("epid")
	tag, ok := to.Params.Get("tag")
	if !ok || tag == "" {
		tag = newTag()
		to.Params.Add("tag", tag)
	}
	d.LocalTag = tag
	if c := req.Contact(); c != nil {
		d.RemoteTarget = uriString(c.Address)
	}
	for _, h := range req.GetHeaders("Record-Route") {
		d.Routes = append(d.Routes, splitRoutes(h.Value())...)
	}
	return d, nil
}

// update learns from a 2xx to the endpoint's INVITE or SUBSCRIBE what
// establishes the dialog: the peer's tag and epid, its Contact, and the
// route set (Record-Route reversed, RFC 3261 12.1.2).
func (d *Dialog) update(res *sipmsg.Response) {
	if to := res.To(); to != nil {
		if tag, ok := to.Params.Get("tag"); ok {
			d.RemoteTag = tag
		}
		if epid, ok := to.Params.Get("epid"); ok {
			d.RemoteEPID = epid
		}
	}
	if c := res.Contact(); c != nil {
		d.RemoteTarget = uriString(c.Address)
	}
	var routes []string
	for _, h := range res.GetHeaders("Record-Route") {
		routes = append(routes, splitRoutes(h.Value())...)
	}
	if len(routes) > 0 {
		slices.Reverse(routes)
		d.Routes = routes
	}
}

// request builds the next request of the endpoint in dialog d (CSeq one
// up; an ACK or CANCEL reuses the INVITE's, see requestCSeq).
func (s *Session) request(d *Dialog, method sipmsg.RequestMethod) (*sipmsg.Request, error) {
	d.LocalCSeq++
	return s.requestCSeq(d, method, d.LocalCSeq)
}

// requestCSeq builds a request in dialog d with the given CSeq number.
func (s *Session) requestCSeq(d *Dialog, method sipmsg.RequestMethod, cseq uint32) (*sipmsg.Request, error) {
	target := d.RemoteTarget
	if target == "" {
		target = d.Peer
	}
	var ru sipmsg.Uri
	if err := sipmsg.ParseUri(target, &ru); err != nil {
		return nil, fmt.Errorf("dialog target %q: %w", target, err)
	}
	req := sipmsg.NewRequest(method, ru)
	to := "<" + d.Peer + ">"
	if d.RemoteTag != "" {
		to += ";tag=" + d.RemoteTag
	}
	if d.RemoteEPID != "" {
		to += ";epid=" + d.RemoteEPID
	}
	s.addCommon(req, d.LocalTag, to, d.CallID, cseq, method)
	for _, r := range d.Routes {
		req.AppendHeader(sipmsg.NewHeader("Route", r))
	}
	return req, nil
}

// uriString writes u without the parameters of the header around it.
func uriString(u sipmsg.Uri) string { return u.String() }

// splitRoutes splits a Record-Route value into its name-addrs (commas
// inside <> are part of a URI).
func splitRoutes(v string) []string {
	var out []string
	depth, start := 0, 0
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '<':
			depth++
		case '>':
			depth--
		case ',':
			if depth == 0 {
				if r := strings.TrimSpace(v[start:i]); r != "" {
					out = append(out, r)
				}
				start = i + 1
			}
		}
	}
	if r := strings.TrimSpace(v[start:]); r != "" {
		out = append(out, r)
	}
	return out
}
