package stack

import (
	"fmt"
	"os"
	"regexp"
)

// WriteDoublePuppetRegistration writes to path the second application
// service registration that double puppeting needs (docs/operator-guide.md,
// Double puppeting) and returns its as_token, which the bridge's
// double_puppet.secrets carries as "as_token:<token>".
//
// Its namespace covers every user of serverName, not exclusively: the
// token may act as them, it takes nothing away from them. It has no URL,
// so the homeserver sends it no events; rate_limited is off because the
// bridge sends people's own messages with it.
func WriteDoublePuppetRegistration(path, serverName string) (string, error) {
	token := randomString(48)
	reg := fmt.Sprintf(`id: doublepuppet
url:
as_token: %s
hs_token: %s
sender_localpart: %s
rate_limited: false
namespaces:
  users:
    - regex: '@.*:%s'
      exclusive: false
`, token, randomString(48), randomString(24), regexp.QuoteMeta(serverName))
	if err := os.WriteFile(path, []byte(reg), 0o600); err != nil {
		return "", fmt.Errorf("write double puppet registration: %w", err)
	}
	return token, nil
}
