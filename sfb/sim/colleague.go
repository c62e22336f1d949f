package sim

import (
	"context"
	"time"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// colleagueTask is one scripted action of the colleague. Tasks run one at
// a time in order, so replies keep the order of the messages they answer.
type colleagueTask func(ctx context.Context)

// colleagueQueue is the colleague's backlog; beyond it, tasks are dropped
// with a log line rather than blocking the server.
const colleagueQueue = 1024

func (s *Server) startColleague() {
	s.colleague = make(chan colleagueTask, colleagueQueue)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			select {
			case <-s.ctx.Done():
				return
			case t := <-s.colleague:
				t(s.ctx)
			}
		}
	}()
}

// enqueue is called with s.mu held.
func (s *Server) enqueue(t colleagueTask) {
	if s.closed || s.colleague == nil {
		return
	}
	select {
	case s.colleague <- t:
	default:
		s.log.Warn().Msg("colleague backlog full, dropping a scripted action")
	}
}

// colleagueGreet greets a user who just became available: typing, a plain
// message, typing, an HTML message. Called with s.mu held.
func (s *Server) colleagueGreet(to sfb.URI) {
	c := s.opts.Colleague
	name := s.users[to].name
	cname := s.users[c].name
	s.enqueue(func(ctx context.Context) {
		s.colleagueSay(ctx, to, sfb.Message{
			Text: "Hello " + name + "! This is " + cname + " on Skype for Business. Write me anything and I will answer.",
		})
		// The second message goes into the conversation once the first
		// invitation was accepted (or failed).
		s.mu.Lock()
		var connected chan struct{}
		if d := s.dialogs[keyOf(c, to)]; d != nil {
			connected = d.connected
		}
		s.mu.Unlock()
		if connected != nil {
			t := time.NewTimer(s.opts.InvitationTimeout)
			select {
			case <-connected:
			case <-t.C:
			case <-ctx.Done():
			}
			t.Stop()
		}
		s.colleagueSay(ctx, to, sfb.Message{
			Text: "This message is formatted: bold, italic and a link to https://matrix.org",
			HTML: `<p>This message is <b>formatted</b>: <b>bold</b>, <i>italic</i> and a <a href="https://matrix.org">link</a></p>`,
		})
	})
}

// colleagueReply answers a message with a quote of it. Called with s.mu
// held.
func (s *Server) colleagueReply(to sfb.URI, msg sfb.Message) {
	s.enqueue(func(ctx context.Context) {
		s.colleagueSay(ctx, to, sfb.Message{Text: `You wrote: "` + msg.Text + `"`})
	})
}

// colleagueSay shows typing for a moment, then sends.
func (s *Server) colleagueSay(ctx context.Context, to sfb.URI, msg sfb.Message) {
	c := s.opts.Colleague
	log := s.log.With().Stringer("colleague", c).Stringer("to", to).Logger()
	if err := s.SetTyping(ctx, c, to, true); err != nil {
		log.Warn().Err(err).Msg("colleague could not show typing")
	}
	t := time.NewTimer(s.opts.ColleagueTypingDelay)
	select {
	case <-t.C:
	case <-ctx.Done():
		t.Stop()
		return
	}
	if err := s.SendMessage(ctx, c, to, msg); err != nil {
		log.Warn().Err(err).Msg("colleague could not send")
	}
}
