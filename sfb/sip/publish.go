package sip

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sip/presence"
)

// The user's own presence over SIP: publications through SERVICE with the
// versions of roaming self, and the machine state that keeps the user
// active.

// readSelf reads a roaming-self document: the versions of the user's own
// category instances.
func (s *Session) readSelf(body []byte) error {
	r, err := presence.ParseRoamingSelf(body)
	if err != nil {
		return err
	}
	p := &s.pres
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.versions == nil {
		p.versions = presence.Versions{}
	}
	p.versions.Learn(r.Categories)
	return nil
}

// ensureSelf subscribes to roaming self once, for the versions of what the
// user publishes; a failure is logged (a 409 tells the versions too).
func (s *Session) ensureSelf(ctx context.Context) {
	p := &s.pres
	p.mu.Lock()
	if p.self != nil {
		p.mu.Unlock()
		return
	}
	p.self = &subscription{event: presence.EventRoamingSelf}
	if p.versions == nil {
		p.versions = presence.Versions{}
	}
	sub := p.self
	p.mu.Unlock()
	if err := s.subscribeSelf(ctx, sub, true); err != nil {
		s.log.Warn().Err(err).Msg("Could not subscribe to the user's own categories; publishing with the versions a conflict tells")
		p.mu.Lock()
		sub.lost = true
		wait := s.backoff(sub)
		p.mu.Unlock()
		s.scheduleSub(sub, wait)
	}
}

// Publish implements sfb.PresenceSession: the user state (the availability
// number of PublishNumber) and the personal note, published through
// SERVICE (msrtc-category-publish) with the versions the server holds.
func (s *Session) Publish(ctx context.Context, pub sfb.Publication) error {
	var build []func(presence.Versions) []presence.Publication
	if pub.Availability != nil {
		n, err := presence.PublishNumber(*pub.Availability)
		if err != nil {
			return err
		}
		build = append(build, func(v presence.Versions) []presence.Publication { return v.UserState(n) })
	}
	if pub.Note != nil {
		note, ok := presence.CleanText(*pub.Note)
		if !ok {
			s.log.Warn().Int("bytes", len(*pub.Note)).Msg("Note cleaned or cut before publishing")
		}
		build = append(build, func(v presence.Versions) []presence.Publication { return v.Note(note) })
	}
	if len(build) == 0 {
		return nil
	}
	s.pres.pubMu.Lock()
	defer s.pres.pubMu.Unlock()
	s.ensureSelf(ctx)
	return s.publish(ctx, "publish presence", build...)
}

// publish sends the publications build makes from the versions held, and
// again with the server's versions when it refuses them (409).
func (s *Session) publish(ctx context.Context, op string, build ...func(presence.Versions) []presence.Publication) error {
	p := &s.pres
	for attempt := 1; ; attempt++ {
		p.mu.Lock()
		if p.versions == nil {
			p.versions = presence.Versions{}
		}
		doc := presence.Publish{URI: string(s.self)}
		for _, b := range build {
			doc.Publications = append(doc.Publications, b(p.versions)...)
		}
		p.mu.Unlock()
		req, err := s.newRequest(sipmsg.RequestMethod("SERVICE"), string(s.self))
		if err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		req.AppendHeader(sipmsg.NewHeader("Content-Type", presence.ContentTypePublish))
		req.SetBody(doc.Marshal())
		rctx, cancel := context.WithTimeout(ctx, s.t.timings.RequestTimeout)
		res, err := s.do(rctx, op, req)
		cancel()
		if err == nil {
			p.mu.Lock()
			p.versions.Published(doc)
			if strings.HasPrefix(strings.ToLower(headerValue(res, "Content-Type")), presence.ContentTypeRoamingSelf) {
				if r, err := presence.ParseRoamingSelf(res.Body()); err == nil {
					p.versions.Learn(r.Categories)
				}
			}
			p.mu.Unlock()
			return nil
		}
		var e *Error
		if !errors.As(err, &e) || e.Status != 409 || res == nil || attempt >= publishAttempts {
			return err
		}
		fault, ferr := presence.ParseFault(res.Body())
		switch {
		case ferr != nil:
			return fmt.Errorf("%w (%w)", err, ferr)
		case fault.Code != presence.FaultWrongDelta:
			return fmt.Errorf("%w (fault %q)", err, fault.Code)
		}
		p.mu.Lock()
		named := p.versions.Conflict(doc, fault)
		p.mu.Unlock()
		if !named {
			return fmt.Errorf("%w: the conflict names none of the publications", err)
		}
		s.log.Debug().Int("attempt", attempt).Msg("Publication versions were stale, publishing again with the server's")
	}
}

// ReportActivity implements sfb.PresenceSession as Communicator does: the
// endpoint's machine state is Active (3500) while the user is active, and
// turns Inactive (5000) five minutes and Away (15500) twenty minutes after
// the last activity, so that SfB shows the user idle as it would a
// desktop client's. Only the changes are published: activity while Active
// costs nothing but a timer's reset.
func (s *Session) ReportActivity(ctx context.Context) error {
	p := &s.pres
	p.mu.Lock()
	p.activeAt = time.Now()
	due := p.machine != presence.MachineActive
	p.mu.Unlock()
	idle, _ := s.machineTimings()
	s.armIdle(idle)
	if !due {
		return nil
	}
	return s.publishMachine(ctx, presence.MachineActive)
}

// machineTimings are when the machine state turns Inactive and Away
// after the last activity.
func (s *Session) machineTimings() (idle, away time.Duration) {
	idle, away = s.t.timings.MachineIdle, s.t.timings.MachineAway
	if idle <= 0 {
		idle = 5 * time.Minute
	}
	if away <= idle {
		away = idle + 15*time.Minute
	}
	return idle, away
}

// armIdle (re)arms the timer that lowers the machine state.
func (s *Session) armIdle(after time.Duration) {
	p := &s.pres
	p.mu.Lock()
	defer p.mu.Unlock()
	if s.closed.Load() {
		return
	}
	s.hookStop()
	if p.idle == nil {
		p.idle = time.AfterFunc(after, s.machineIdle)
		return
	}
	p.idle.Reset(after)
}

// machineIdle lowers the machine state once activity stopped long enough.
func (s *Session) machineIdle() {
	if s.ctx.Err() != nil {
		return
	}
	idle, away := s.machineTimings()
	p := &s.pres
	p.mu.Lock()
	quiet := time.Since(p.activeAt)
	cur := p.machine
	p.mu.Unlock()
	var want int
	switch {
	case quiet >= away:
		want = presence.MachineAway
	case quiet >= idle:
		want = presence.MachineInactive
		s.armIdle(away - quiet)
	default:
		s.armIdle(idle - quiet)
		return
	}
	if cur == want || cur == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.t.timings.RequestTimeout)
	defer cancel()
	if err := s.publishMachine(ctx, want); err != nil {
		s.log.Warn().Err(err).Int("availability", want).Msg("Could not publish the machine state")
	}
}

// publishMachine publishes the endpoint's machine state, unless it is
// published already or, for a lower one, activity came meanwhile.
func (s *Session) publishMachine(ctx context.Context, availability int) error {
	p := &s.pres
	p.pubMu.Lock()
	defer p.pubMu.Unlock()
	idle, _ := s.machineTimings()
	p.mu.Lock()
	cur, quiet := p.machine, time.Since(p.activeAt)
	p.mu.Unlock()
	if cur == availability || availability != presence.MachineActive && quiet < idle {
		return nil
	}
	instance := presence.MachineStateInstance(s.epid)
	err := s.publish(ctx, "report activity", func(v presence.Versions) []presence.Publication {
		return v.MachineState(instance, availability)
	})
	if err == nil {
		p.mu.Lock()
		p.machine = availability
		p.mu.Unlock()
	}
	return err
}
