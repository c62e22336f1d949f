package ucwa

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// resumeVersion is the version of the ResumeState encoding; a state of
// another version is not resumed (a new application is created).
const resumeVersion = 1

// resumeState is the JSON behind Session.ResumeState: which application to
// continue and where in its event channel. Nothing in it is secret (the
// URLs only work with the user's token, which is kept separately).
type resumeState struct {
	V            int    `json:"v"`
	Applications string `json:"applications"`
	Application  string `json:"application"`
	// Events is the event channel URL to GET next; its ack acknowledges
	// exactly the batches the handler finished.
	Events string `json:"events"`
	// Firsts are the invitations' first messages whose repeat may still
	// come (by conversation href), so that a repeat after the restart is
	// not bridged a second time. Only a digest of the text is kept.
	Firsts map[string]resumeFirst `json:"firsts,omitempty"`
}

type resumeFirst struct {
	SHA256 string    `json:"sha256"`
	At     time.Time `json:"at"`
}

func textDigest(text string) [sha256.Size]byte { return sha256.Sum256([]byte(text)) }

// ResumeState implements sfb.Session.
func (s *session) ResumeState() string {
	s.mu.Lock()
	st := resumeState{V: resumeVersion, Application: s.app.self, Events: s.resume.events}
	if s.app.base != nil {
		st.Applications = s.app.base.String()
	}
	now := s.t.now()
	for h, f := range s.resume.firsts {
		if now.Sub(f.at) < firstRepeatWindow {
			if st.Firsts == nil {
				st.Firsts = map[string]resumeFirst{}
			}
			st.Firsts[h] = resumeFirst{SHA256: hex.EncodeToString(f.sum[:]), At: f.at}
		}
	}
	s.mu.Unlock()
	if st.Application == "" || st.Events == "" || st.Applications == "" {
		return ""
	}
	b, err := json.Marshal(st)
	if err != nil {
		return ""
	}
	return string(b)
}

// markHandled records that the handler finished every event of the batch
// fetched before next: a later session starts at next. Not when the
// session stopped during the batch, since then the handler may have given
// up on (or never seen) some of its events.
func (s *session) markHandled(next string) {
	if s.ctx.Err() != nil || s.closed.Load() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	firsts := make(map[string]firstMessage, len(s.firsts))
	for h, f := range s.firsts {
		firsts[h] = f
	}
	s.resume = resumePoint{events: next, firsts: firsts}
}

// resumeApplication continues the application that raw (a ResumeState)
// names: it reads the application with our token, makes the user available
// again if the server forgot that, and makes the event loop start at the
// stored events URL, so the server delivers what was not acknowledged.
func (s *session) resumeApplication(ctx context.Context, turn *signInTurn, raw string) error {
	var st resumeState
	if err := json.Unmarshal([]byte(raw), &st); err != nil {
		return fmt.Errorf("decode resume state: %w", err)
	}
	if st.V != resumeVersion {
		return fmt.Errorf("resume state has version %d, want %d", st.V, resumeVersion)
	}
	apps, err := s.checkResumeURL(st.Applications, "applications")
	if err != nil {
		return err
	}
	self, err := s.checkResumeURL(st.Application, "application")
	if err != nil {
		return err
	}
	events, err := s.checkResumeURL(st.Events, "events")
	if err != nil {
		return err
	}
	if err := s.waitTurn(ctx, turn, apps.String()); err != nil {
		return fmt.Errorf("resume application: %w", err)
	}
	rctx, cancel := context.WithTimeout(ctx, s.t.cfg.RequestTimeout)
	var app Application
	_, err = s.c.doJSON(rctx, request{op: "get application", method: http.MethodGet, url: self.String(), signIn: true}, &app)
	cancel()
	if err != nil {
		return fmt.Errorf("resume application: %w", err)
	}
	if err := s.useApplication(apps.String(), &app, "resume application"); err != nil {
		return err
	}
	s.mu.Lock()
	s.startEvents = events.String()
	if cur, err := url.Parse(s.app.events); err != nil || cur.Scheme != events.Scheme || cur.Host != events.Host || cur.Path != events.Path {
		// Not this application's channel: its own events link makes the
		// server resync to the first unacknowledged batch.
		s.log.Warn().Msg("Stored events URL does not belong to the resumed application, starting at its events link")
		s.startEvents = s.app.events
	}
	s.resume = resumePoint{events: s.startEvents, firsts: map[string]firstMessage{}}
	for h, f := range st.Firsts {
		sum, err := hex.DecodeString(f.SHA256)
		if err != nil || len(sum) != sha256.Size {
			continue
		}
		fm := firstMessage{at: f.At}
		copy(fm.sum[:], sum)
		s.firsts[h] = fm
		s.resume.firsts[h] = fm
	}
	self2 := s.app.self
	s.mu.Unlock()
	s.log.Info().Str("application", self2).Msg("Resumed UCWA application")
	// A resumed application may have lost its availability (the server
	// drops it after a while without a pending GET); 409 AlreadyExists
	// when it did not is fine (makeMeAvailable handles it).
	if err := s.makeMeAvailable(ctx); err != nil {
		return fmt.Errorf("resume application: %w", err)
	}
	return nil
}

// checkResumeURL parses a URL from stored state and refuses one outside
// the organisation: it will carry the user's token.
func (s *session) checkResumeURL(raw, what string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("resume state: %s URL %q is not absolute", what, redact(raw))
	}
	if err := s.t.sameOrganisation(s.c.creds, u); err != nil {
		return nil, fmt.Errorf("resume state: %s URL: %w", what, err)
	}
	return u, nil
}
