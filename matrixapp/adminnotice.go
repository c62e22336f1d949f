package matrixapp

import (
	"context"
	"fmt"
	"net/http"
	"strings"
)

// modeChangeFailed tells the admins that a change of modes did not take
// effect (bridge.Connector.ModeChangeFailed).
type modeChangeFailed func(ctx context.Context, what string, cause error)

// noticeFailedModeChanges passes the migration API's (or the dashboard's)
// requests to next and tells the admins of every write of modes (a wave's,
// a person's, the default, an import) that the bridge failed on: the team
// member who sent it may be a script nobody watches. Refusals of bad input (4xx) are the
// caller's to fix and are not notified.
func noticeFailedModeChanges(next http.Handler, notify modeChangeFailed) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		if rec.status < 500 || rec.status == http.StatusServiceUnavailable || !changesModes(r) {
			return
		}
		what := r.Method + " " + r.URL.Path
		// The request's context ends with the answer; the notice must not.
		notify(context.WithoutCancel(r.Context()), what, fmt.Errorf("the bridge answered %d; its log says why", rec.status))
	})
}

func changesModes(r *http.Request) bool {
	if r.Method != http.MethodPut && r.Method != http.MethodPost {
		return false
	}
	return strings.HasSuffix(r.URL.Path, "/mode") || strings.HasSuffix(r.URL.Path, "/default-mode") || strings.HasSuffix(r.URL.Path, "/import")
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(status int) {
	s.status = status
	s.ResponseWriter.WriteHeader(status)
}
