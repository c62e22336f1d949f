package sim

import (
	"fmt"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// SetPassword changes uri's password, as an administrator resetting it in
// the directory would. Tokens already issued stay valid until they expire
// (ExpireTokens), as with a real server: only the next sign-in with the
// old password is refused.
func (s *Server) SetPassword(uri sfb.URI, password string) error {
	uri = canonical(uri)
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[uri]
	if u == nil {
		return fmt.Errorf("set password of %s: no such user", uri)
	}
	u.password = password
	return nil
}
