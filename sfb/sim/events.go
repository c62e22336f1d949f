package sim

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// priority is the reference's aggregation class of an event: high (and
// real-time) events release a pending GET at once, medium ones are held
// for Options.EventAggregation to be batched with others.
type priority int8

const (
	prioMedium priority = iota
	prioHigh
)

// event is one entry of an events response, rendered when it happened so
// that embedded resources show the state of that moment.
type event struct {
	senderRel, senderHref string
	body                  obj
	prio                  priority
	at                    time.Time
}

// eventChannel is the P-GET state of one application. Batch N is the
// answer to "events?ack=N"; asking for N acknowledges every batch before
// it. The last batch stays retained until acknowledged so that a repeated
// GET (after a lost response) gets the same events again.
type eventChannel struct {
	pending []event
	// acked: every batch below it is acknowledged (starts at 1).
	acked int
	// issued is the highest batch number answered; last is its body.
	issued int
	last   []byte
	waiter *waiter

	dropNext    bool
	forceResume bool
	forceResync bool

	// settings are the client's medium, low and timeout query parameters,
	// remembered for the next P-GETs until changed or the channel is
	// re-created (EventChannelDetails.md).
	settings channelSettings
}

// channelSettings are the event channel parameters a client set; zero
// means the server's default. low is validated and kept, but the
// simulator emits no low-priority events for it to pace.
type channelSettings struct {
	medium, low, timeout time.Duration
}

// parseChannelSettings applies the parameters present in q to cur, with
// the bounds events_ref.md gives. A value that is not a whole number of
// seconds within them is an error naming the parameter and its bounds.
func parseChannelSettings(q url.Values, cur channelSettings) (channelSettings, error) {
	for _, p := range []struct {
		name     string
		min, max int
		to       *time.Duration
	}{
		{"medium", 5, 1800, &cur.medium},
		{"low", 5, 1800, &cur.low},
		{"timeout", 180, 1800, &cur.timeout},
	} {
		if !q.Has(p.name) {
			continue
		}
		v := q.Get(p.name)
		n, err := strconv.Atoi(v)
		if err != nil || n < p.min || n > p.max {
			return cur, fmt.Errorf("%s must be a whole number of seconds from %d to %d, not %q", p.name, p.min, p.max, v)
		}
		*p.to = time.Duration(n) * time.Second
	}
	return cur, nil
}

// aggregation is how long medium events are held on this channel.
func (s *Server) aggregation(ec *eventChannel) time.Duration {
	if ec.settings.medium > 0 {
		return ec.settings.medium
	}
	return s.opts.EventAggregation
}

// eventWait is how long a pending GET on this channel waits for events.
func (s *Server) eventWait(ec *eventChannel) time.Duration {
	if ec.settings.timeout > 0 {
		return ec.settings.timeout
	}
	return s.opts.EventWait
}

// waiter is a pending GET. final, set under the server lock before notify,
// tells it to stop waiting for events; cut is the answer a dropped GET
// sends part of.
type waiter struct {
	ch       chan struct{}
	ack      int
	priority int
	final    waitEnd
	gone     goneApp
	cut      []byte
}

type waitEnd int8

const (
	waitEvents waitEnd = iota
	waitReplaced
	waitDropped
	waitGone
)

func (ec *eventChannel) notify() {
	if ec.waiter != nil {
		select {
		case ec.waiter.ch <- struct{}{}:
		default:
		}
	}
}

func (ec *eventChannel) end(how waitEnd, g goneApp) {
	if w := ec.waiter; w != nil {
		w.final, w.gone = how, g
		ec.waiter = nil
		select {
		case w.ch <- struct{}{}:
		default:
		}
	}
}

// dropEvents makes the pending GET of a fail in the middle of its answer,
// or the next one when none is pending. The answer is built here, under
// the server lock, so that the batch it carries is issued (and retained
// until acknowledged) before anything else can touch the channel.
func (s *Server) dropEvents(a *app) {
	ec := &a.ec
	w := ec.waiter
	if w == nil {
		ec.dropNext = true
		return
	}
	w.cut = s.droppedAnswer(a, w.ack)
	ec.end(waitDropped, goneApp{})
}

// droppedAnswer is what a GET for batch ack would be answered with now.
// It is never received whole, so the client asks again with the same ack:
// a batch is issued and retained (not acknowledged) and a forced resync
// stays pending, so that the repeated GET gets the same answer.
func (s *Server) droppedAnswer(a *app, ack int) []byte {
	ec := &a.ec
	a.lastActive = s.now()
	switch {
	case ec.forceResync || ack < ec.acked || ack > ec.issued+1:
		return s.resyncBody(a, ack)
	case ack == ec.issued && ec.last != nil:
		return ec.last
	}
	return s.batch(a, ack)
}

// cut sends the status line, the headers and half of body, then closes the
// connection: a network failure in the middle of a response. Closing
// before the first response byte would not do: Go's client silently
// re-sends an idempotent request whose reused connection closed that
// early, and the client would never see the drop.
func cut(w http.ResponseWriter, body []byte) {
	setJSONHeaders(w.Header())
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body[:len(body)/2])
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	conn, _, err := rc.Hijack()
	if err != nil {
		// HTTP/2 has no connection to hand out; aborting the handler
		// resets the stream after the flushed part, which the client
		// sees as well.
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}

// releaseAt is when the pending events should be sent: now for high
// priority ones, after the aggregation delay for medium ones, never (zero)
// without events.
func (ec *eventChannel) releaseAt(agg time.Duration) time.Time {
	var at time.Time
	for _, e := range ec.pending {
		if e.prio == prioHigh || ec.forceResync {
			return e.at
		}
		if t := e.at.Add(agg); at.IsZero() || t.Before(at) {
			at = t
		}
	}
	if ec.forceResync {
		return time.Unix(1, 0)
	}
	return at
}

// emit queues an event for the application and wakes its pending GET.
func (s *Server) emit(a *app, senderRel, senderHref string, prio priority, body obj) {
	if a.removed {
		return
	}
	// Aggregation runs on the real clock: it paces HTTP responses, unlike
	// expiry, which follows Options.Now.
	a.ec.pending = append(a.ec.pending, event{senderRel: senderRel, senderHref: senderHref, body: body, prio: prio, at: time.Now()})
	a.ec.notify()
}

func (a *app) eventsHref(ack int) string {
	return a.base() + "/events?ack=" + strconv.Itoa(ack)
}

// batch renders the pending events as batch n and retains it.
func (s *Server) batch(a *app, n int) []byte {
	ec := &a.ec
	links := obj{"self": link(a.eventsHref(n))}
	if ec.forceResume {
		links["resume"] = link(a.eventsHref(n + 1))
		ec.forceResume = false
	} else {
		links["next"] = link(a.eventsHref(n + 1))
	}
	body := obj{"_links": links}
	var senders []any
	var cur obj
	var curEvents []any
	flush := func() {
		if cur != nil {
			cur["events"] = curEvents
			senders = append(senders, cur)
		}
	}
	for _, e := range ec.pending {
		if cur == nil || cur["rel"] != e.senderRel || cur["href"] != e.senderHref {
			flush()
			cur, curEvents = obj{"rel": e.senderRel, "href": e.senderHref}, nil
		}
		curEvents = append(curEvents, e.body)
	}
	flush()
	if len(senders) > 0 {
		body["sender"] = senders
	}
	ec.pending = nil
	ec.issued = n
	ec.last = mustJSON(body)
	return ec.last
}

// resyncBody points to the first unacknowledged batch; self is the ack the
// client asked for.
func (s *Server) resyncBody(a *app, asked int) []byte {
	if asked < 1 {
		asked = a.ec.acked
	}
	return mustJSON(obj{"_links": obj{
		"self":   link(a.eventsHref(asked)),
		"resync": link(a.eventsHref(a.ec.acked)),
	}})
}

// handleEvents is the pending GET.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request, a *app) {
	q := r.URL.Query()
	ack, err := strconv.Atoi(q.Get("ack"))
	if err != nil {
		ack = -1
	}
	prio, _ := strconv.Atoi(q.Get("priority"))

	s.mu.Lock()
	ec := &a.ec
	settings, err := parseChannelSettings(q, ec.settings)
	if err != nil {
		s.mu.Unlock()
		badRequest(w, "ParameterValidationFailure", err.Error())
		return
	}
	ec.settings = settings
	a.lastActive = s.now()
	if ack == ec.issued+1 {
		// Everything before is acknowledged.
		ec.acked = ack
		ec.last = nil
	}
	if ec.dropNext {
		// The request arrived (its ack counts), its answer does not.
		ec.dropNext = false
		if old := ec.waiter; old != nil {
			ec.end(waitReplaced, goneApp{})
		}
		body := s.droppedAnswer(a, ack)
		s.mu.Unlock()
		cut(w, body)
		return
	}
	switch {
	case ec.forceResync || ack < ec.acked || ack > ec.issued+1:
		// An ack the server cannot serve (or a forced resync): only a
		// resync link to the first unacknowledged batch.
		ec.forceResync = false
		body := s.resyncBody(a, ack)
		s.mu.Unlock()
		writeRaw(w, http.StatusOK, body)
		return
	case ack == ec.issued && ec.last != nil:
		// The client did not get the last answer: the same batch again.
		body := ec.last
		s.mu.Unlock()
		writeRaw(w, http.StatusOK, body)
		return
	}
	if at := ec.releaseAt(s.aggregation(ec)); !at.IsZero() && !at.After(time.Now()) {
		if old := ec.waiter; old != nil {
			ec.end(waitReplaced, goneApp{})
		}
		body := s.batch(a, ack)
		s.mu.Unlock()
		writeRaw(w, http.StatusOK, body)
		return
	}
	if old := ec.waiter; old != nil {
		if prio < old.priority {
			s.mu.Unlock()
			writeError(w, http.StatusConflict, "Conflict", "PGetReplaced", "A pending GET with a higher priority is in progress.")
			return
		}
		ec.end(waitReplaced, goneApp{})
	}
	wt := &waiter{ch: make(chan struct{}, 1), ack: ack, priority: prio}
	ec.waiter = wt
	wait := s.eventWait(ec)
	s.mu.Unlock()

	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	var agg *time.Timer
	defer func() {
		if agg != nil {
			agg.Stop()
		}
	}()
	var aggC <-chan time.Time
	// answer builds the batch when this GET is still the pending one.
	answer := func(force bool) (body []byte, done bool) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if wt.final != waitEvents || ec.waiter != wt {
			// Ended by someone else; finish answers as wt.final says.
			return nil, true
		}
		now := time.Now()
		if ec.forceResync {
			ec.forceResync = false
			ec.waiter = nil
			a.lastActive = s.now()
			return s.resyncBody(a, ack), true
		}
		at := ec.releaseAt(s.aggregation(ec))
		if force || (!at.IsZero() && !at.After(now)) {
			ec.waiter = nil
			a.lastActive = s.now()
			return s.batch(a, ack), true
		}
		if !at.IsZero() {
			if agg != nil {
				agg.Stop()
			}
			agg = time.NewTimer(at.Sub(now))
			aggC = agg.C
		}
		return nil, false
	}
	finish := func(body []byte) {
		switch wt.final {
		case waitReplaced:
			writeError(w, http.StatusConflict, "Conflict", "PGetReplaced", "The pending GET was replaced by a newer one.")
		case waitDropped:
			cut(w, wt.cut)
		case waitGone:
			writeError(w, wt.gone.status, wt.gone.code, wt.gone.subcode, goneMessage(wt.gone))
		default:
			if body != nil {
				writeRaw(w, http.StatusOK, body)
			}
		}
	}
	// Events may have arrived while the lock was released.
	if body, done := answer(false); done {
		finish(body)
		return
	}
	for {
		select {
		case <-r.Context().Done():
			s.leave(a, wt)
			return
		case <-s.ctx.Done():
			s.leave(a, wt)
			writeError(w, http.StatusServiceUnavailable, "ServiceUnavailable", "", "The server is shutting down.")
			return
		case <-wt.ch:
		case <-aggC:
			aggC = nil
		case <-deadline.C:
			body, _ := answer(true)
			finish(body)
			return
		}
		if body, done := answer(false); done {
			finish(body)
			return
		}
	}
}

// leave forgets a pending GET whose client went away; its events stay
// queued for the next one.
func (s *Server) leave(a *app, wt *waiter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a.ec.waiter == wt {
		a.ec.waiter = nil
		a.lastActive = s.now()
	}
}

func goneMessage(g goneApp) string {
	switch g.subcode {
	case "InactiveApplicationExpired":
		return "The application expired because it was inactive."
	case "ApplicationNotFound":
		return "The application resource does not exist."
	}
	return "The application is gone."
}
