package sip

import (
	"context"
	"errors"
	"fmt"
	"strings"

	sipmsg "github.com/emiago/sipgo/sip"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sip/presence"
)

// The user's own lists over SIP: the contact list (roaming contacts
// self-subscription) and a person's contact card.

// subscribeSelf sends the SUBSCRIBE of a self-subscription (roaming
// contacts or roaming self): the first of a new dialog when fresh, else a
// refresh in its dialog. The 200 usually carries the first notification
// (ms-piggyback-first-notify), which is read.
func (s *Session) subscribeSelf(ctx context.Context, sub *subscription, fresh bool) error {
	p := &s.pres
	p.mu.Lock()
	if fresh {
		sub.dialog = s.newDialog(string(s.self))
	}
	req, err := s.request(sub.dialog, sipmsg.SUBSCRIBE)
	p.mu.Unlock()
	if err != nil {
		return fmt.Errorf("subscribe to %s: %w", sub.event, err)
	}
	switch sub.event {
	case presence.EventRoamingContacts:
		addSubscribeHeaders(req, sub.event, presence.ContentTypeRoamingContacts)
	case presence.EventRoamingSelf:
		addSubscribeHeaders(req, sub.event, presence.ContentTypeRoamingSelf)
		req.AppendHeader(sipmsg.NewHeader("Content-Type", presence.ContentTypeRoamingSelf))
		req.SetBody([]byte(`<roamingList xmlns="http://schemas.microsoft.com/2006/09/sip/roaming-self"><roaming type="categories"/></roamingList>`))
	}
	rctx, cancel := context.WithTimeout(ctx, s.t.timings.RequestTimeout)
	defer cancel()
	res, err := s.do(rctx, "subscribe to "+sub.event, req)
	if err != nil {
		return err
	}
	s.established(sub, res, fresh)
	if len(res.Body()) == 0 {
		return nil
	}
	switch sub.event {
	case presence.EventRoamingContacts:
		err = s.readContacts(headerValue(res, "Content-Type"), res.Body())
	case presence.EventRoamingSelf:
		err = s.readSelf(res.Body())
	}
	if err != nil {
		s.log.Warn().Err(err).Str("event", sub.event).Msg("Unreadable first notification, waiting for the next")
	}
	return nil
}

// Contacts implements sfb.PresenceSession: the contact list of the
// roaming contacts self-subscription, subscribed to on the first call and
// kept (its changes come as ContactsChanged).
func (s *Session) Contacts(ctx context.Context) ([]sfb.Person, error) {
	p := &s.pres
	p.mu.Lock()
	c := p.contacts
	if c != nil && errors.Is(c.err, errors.ErrUnsupported) {
		// The list is in the Unified Contact Store: asking again will
		// not change that.
		p.mu.Unlock()
		return nil, fmt.Errorf("list contacts: %w", c.err)
	}
	start := c == nil || c.err != nil
	if start {
		c = &contactsSub{sub: &subscription{event: presence.EventRoamingContacts}, ready: make(chan struct{})}
		p.contacts = c
	}
	p.mu.Unlock()
	if start {
		err := s.subscribeSelf(ctx, c.sub, true)
		if err != nil {
			if errors.Is(err, sfb.ErrUnsupported) {
				// 488: Lync 2013 and later keep a list migrated to the
				// Unified Contact Store in Exchange (pidgin-sipe).
				err = fmt.Errorf("%w (%w)", errUnifiedContactStore, err)
			}
			p.mu.Lock()
			c.err = err
			c.done()
			p.mu.Unlock()
			return nil, fmt.Errorf("list contacts: %w", err)
		}
	}
	select {
	case <-c.ready:
	case <-ctx.Done():
		return nil, fmt.Errorf("list contacts: waiting for the contact list: %w", ctx.Err())
	case <-s.ctx.Done():
		return nil, fmt.Errorf("list contacts: %w", sfb.ErrServerUnavailable)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.err != nil {
		return nil, fmt.Errorf("list contacts: %w", c.err)
	}
	out := make([]sfb.Person, 0, len(c.list))
	for u, name := range c.list {
		out = append(out, sfb.Person{URI: u, DisplayName: name})
	}
	return out, nil
}

// readContacts reads a roaming contacts document: the whole list, or a
// delta to it; a change after the first list is told as ContactsChanged.
func (s *Session) readContacts(contentType string, body []byte) error {
	if ct, _, _ := strings.Cut(contentType, ";"); !strings.EqualFold(strings.TrimSpace(ct), presence.ContentTypeRoamingContacts) {
		return fmt.Errorf("roaming contacts with Content-Type %q", contentType)
	}
	l, err := presence.ParseContactList(body)
	if err != nil {
		return err
	}
	p := &s.pres
	p.mu.Lock()
	c := p.contacts
	if c == nil {
		p.mu.Unlock()
		return nil
	}
	if strings.EqualFold(l.UCSMode, "migrated") {
		// Lync 2013 and later: the list moved to the Unified Contact
		// Store in Exchange and this one is empty (pidgin-sipe).
		c.err = errUnifiedContactStore
		c.done()
		p.mu.Unlock()
		return nil
	}
	first := c.list == nil
	if first && l.Delta {
		// A delta before the list: nothing to apply it to.
		p.mu.Unlock()
		return nil
	}
	next := map[sfb.URI]string{}
	if l.Delta {
		for u, n := range c.list {
			next[u] = n
		}
	}
	add := func(cs []presence.Contact) {
		for _, ct := range cs {
			u, err := sfb.ParseURI(ct.URI)
			if err != nil {
				s.log.Warn().Err(err).Msg("Contact with an unusable address, skipped")
				continue
			}
			name, _ := presence.CleanText(ct.Name)
			if name == "" {
				name = u.Address()
			}
			next[u] = name
		}
	}
	add(l.Contacts)
	add(l.AddedContacts)
	add(l.ModifiedContacts)
	for _, ct := range l.DeletedContacts {
		if u, err := sfb.ParseURI(ct.URI); err == nil {
			delete(next, u)
		}
	}
	changed := !first && !sameContacts(c.list, next)
	c.list = next
	c.done()
	p.mu.Unlock()
	if changed {
		s.emit(sfb.ContactsChanged{})
	}
	return nil
}

func sameContacts(a, b map[sfb.URI]string) bool {
	if len(a) != len(b) {
		return false
	}
	for u, n := range a {
		if m, ok := b[u]; !ok || m != n {
			return false
		}
	}
	return true
}

// contactCard asks the server once for uri's contact card: a batch
// subscription with Expires: 0 (a query, no dialog kept) whose answer
// carries the card, as Communicator looks up a name it does not know. Nil
// when the server has no card for uri.
func (s *Session) contactCard(ctx context.Context, uri sfb.URI) (*presence.ContactCard, error) {
	req, err := s.newRequest(sipmsg.SUBSCRIBE, string(s.self))
	if err != nil {
		return nil, fmt.Errorf("look up %s: %w", uri, err)
	}
	addSubscribeHeaders(req, presence.EventPresence, presence.Accept)
	req.AppendHeader(sipmsg.NewHeader("Require", "adhoclist, categoryList"))
	req.AppendHeader(sipmsg.NewHeader("Supported", "eventlist"))
	req.AppendHeader(sipmsg.NewHeader("Expires", "0"))
	req.AppendHeader(sipmsg.NewHeader("Content-Type", presence.ContentTypeCategoryList))
	req.SetBody(presence.BatchSubscribe{URI: string(s.self), Resources: []presence.Resource{{URI: string(uri)}},
		Categories: []string{"contactCard"}}.Marshal())
	rctx, cancel := context.WithTimeout(ctx, s.t.timings.RequestTimeout)
	defer cancel()
	res, err := s.do(rctx, "look up a person", req)
	if err != nil {
		return nil, fmt.Errorf("look up %s: %w", uri, err)
	}
	if len(res.Body()) == 0 {
		return nil, nil
	}
	n, err := presence.ParseNotify(headerValue(res, "Content-Type"), res.Body())
	if err != nil {
		return nil, fmt.Errorf("look up %s: %w", uri, err)
	}
	for _, doc := range n.Documents {
		if u, err := sfb.ParseURI(doc.URI); err != nil || u != uri {
			continue
		}
		for _, c := range doc.Categories {
			if c.ContactCard != nil {
				return c.ContactCard, nil
			}
		}
	}
	return nil, nil
}
