package sip

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// Error is a SIP request the server answered with a failure: the status,
// its reason phrase, and the ms-diagnostics header SfB servers add.
type Error struct {
	// Op says what was being done ("register", "send message").
	Op     string
	Method string
	Status int
	Reason string
	// Diagnostics is ms-diagnostics (or ms-diagnostics-public), e.g.
	// `4141;reason="User disabled";source="fe.contoso.com"`.
	Diagnostics string
	// RetryAfter is the server's Retry-After, zero when absent.
	RetryAfter time.Duration
	// kind, when set, is the sfb error the status means in Op's context
	// (a 401 to a REGISTER with a password is ErrBadCredentials, to a
	// trusted application it is a configuration error).
	kind error
}

func (e *Error) Error() string {
	s := fmt.Sprintf("%s: %s: SIP %d %s", e.Op, e.Method, e.Status, e.Reason)
	if e.Diagnostics != "" {
		s += " (diagnostics: " + e.Diagnostics + ")"
	}
	return s
}

// Unwrap maps the failure onto the transport-neutral errors of package sfb.
func (e *Error) Unwrap() error {
	if e.kind != nil {
		return e.kind
	}
	switch e.Status {
	case 404, 410, 484:
		return sfb.ErrNotFound
	case 408, 480:
		return fmt.Errorf("%w: %w", sfb.ErrRecipientUnavailable, sfb.ErrDeliveryFailed)
	case 486, 600, 603:
		return fmt.Errorf("%w: %w", sfb.ErrDeclined, sfb.ErrDeliveryFailed)
	case 415, 488, 606:
		return sfb.ErrUnsupported
	}
	if e.Status >= 500 {
		return sfb.ErrServerUnavailable
	}
	return nil
}

// responseError builds the Error for res, the answer to a request of
// method while doing op.
func responseError(op, method string, res *sipmsg.Response) *Error {
	return &Error{Op: op, Method: method, Status: res.StatusCode, Reason: res.Reason,
		Diagnostics: diagnostics(res), RetryAfter: retryAfter(res)}
}

// diagnostics is a message's ms-diagnostics, else ms-diagnostics-public.
func diagnostics(m sipmsg.Message) string {
	if v := headerValue(m, "ms-diagnostics"); v != "" {
		return v
	}
	return headerValue(m, "ms-diagnostics-public")
}

// retryAfter reads Retry-After (RFC 3261 20.33: seconds, with optional
// comment and parameters); zero when absent or unreadable.
func retryAfter(m sipmsg.Message) time.Duration {
	v := headerValue(m, "Retry-After")
	if i := strings.IndexAny(v, " ;("); i >= 0 {
		v = v[:i]
	}
	n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
	if err != nil {
		return 0
	}
	return time.Duration(n) * time.Second
}

// headerValue is the first value of the header name, "" when absent.
func headerValue(m sipmsg.Message, name string) string {
	if hs := m.GetHeaders(name); len(hs) > 0 {
		return hs[0].Value()
	}
	return ""
}

// ErrNotCarried is wrapped by the group-chat and meeting methods: the SIP
// transport does not carry multi-party conversations (conferences) or
// online meetings yet. It is sfb.ErrNotCarried and sfb.ErrUnsupported, so
// that the bridge tells people rather than retrying, and
// errors.ErrUnsupported, so that callers that probe a capability skip it.
var ErrNotCarried error = notCarried{}

type notCarried struct{}

func (notCarried) Error() string { return "not carried by the SIP transport yet" }

func (notCarried) Is(target error) bool {
	return target == sfb.ErrNotCarried || target == sfb.ErrUnsupported || target == errors.ErrUnsupported
}

// ConfigError is an invalid SIP configuration.
type ConfigError struct{ Msg string }

func (e *ConfigError) Error() string { return "sip config: " + e.Msg }
