package ucwa

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// Error is a failed UCWA request: the HTTP status, UCWA's error body when
// the server sent one, and the X-Ms-Diagnostics header.
type Error struct {
	// Op says what was being done ("create application").
	Op          string
	Method, URL string
	Status      int
	Code        string
	Subcode     string
	Message     string
	Diagnostics string
	// RetryAfter is the server's Retry-After, zero when absent.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	s := fmt.Sprintf("%s: %s %s: HTTP %d", e.Op, e.Method, e.URL, e.Status)
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.Subcode != "" {
		s += "/" + e.Subcode
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Diagnostics != "" {
		s += " (diagnostics: " + e.Diagnostics + ")"
	}
	return s
}

// Unwrap maps the failure onto the transport-neutral errors of package sfb.
func (e *Error) Unwrap() error {
	switch {
	case e.Status == http.StatusUnauthorized:
		return sfb.ErrCredentialsRequired
	case e.Status == http.StatusNotFound && e.Subcode != SubcodeApplicationNotFound && e.Subcode != SubcodeInactiveApplicationExpired:
		return sfb.ErrNotFound
	case e.Status == http.StatusTooManyRequests, e.Status >= 500, e.Status == http.StatusRequestTimeout:
		return sfb.ErrServerUnavailable
	}
	return nil
}

// Subcodes the client acts on (ErrorSubcode_ref.md).
const (
	SubcodeApplicationNotFound        = "ApplicationNotFound"
	SubcodeInactiveApplicationExpired = "InactiveApplicationExpired"
	SubcodePGetReplaced               = "PGetReplaced"
)

// applicationGone reports whether err says the UCWA application no longer
// exists, so it must be created again.
func applicationGone(err error) bool {
	var e *Error
	// ApplicationDashboard.md answers an expired application with 410 Gone,
	// other pages with 404; the subcode decides.
	return errors.As(err, &e) && (e.Status == http.StatusNotFound || e.Status == http.StatusGone) &&
		(e.Subcode == SubcodeApplicationNotFound || e.Subcode == SubcodeInactiveApplicationExpired)
}

func statusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// OAuthError is a refusal from the WebTicket token endpoint
// (AuthenticationInUCWA.md: invalid_grant, unsupported_grant_type, ...).
type OAuthError struct {
	Status      int
	Code        string // the "error" field
	Description string
	Diagnostics string
}

func (e *OAuthError) Error() string {
	s := fmt.Sprintf("oauth token: HTTP %d %s", e.Status, e.Code)
	if e.Description != "" {
		s += ": " + e.Description
	}
	if e.Diagnostics != "" {
		s += " (diagnostics: " + e.Diagnostics + ")"
	}
	return s
}

// Unwrap: a rejected grant means bad credentials; a server error means the
// server is unavailable.
func (e *OAuthError) Unwrap() error {
	switch {
	case e.Code == "invalid_grant":
		return sfb.ErrBadCredentials
	case e.Code == "server_error", e.Status >= 500:
		return sfb.ErrServerUnavailable
	case e.Code == "unsupported_grant_type", e.Code == "invalid_request", e.Code == "invalid_scope":
		return sfb.ErrUnsupported
	}
	return nil
}

// ConfigError is an invalid configuration or a URL the configuration does
// not allow (plain HTTP to a non-loopback host).
type ConfigError struct{ Msg string }

func (e *ConfigError) Error() string { return "ucwa config: " + e.Msg }
