package matrixapp

import (
	"crypto/subtle"
	"fmt"
	"os"
	"strings"

	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix/bridgev2/bridgeconfig"
	"maunium.net/go/mautrix/id"
)

// Encryption and double puppeting: settings that each look fine alone but
// lose data or open a door together. docs/operator-guide.md (Encryption,
// Double puppeting) explains each.
const (
	// minPickleKeyLength is the shortest encryption.pickle_key accepted:
	// it is the key to every encryption key the bridge keeps.
	minPickleKeyLength = 32
	// minDoublePuppetTokenLength is the shortest as_token accepted for
	// double puppeting: whoever has it may act as every user of the
	// homeserver.
	minDoublePuppetTokenLength = 32
	// asTokenPrefix marks a double puppeting secret that is an
	// appservice token, the only kind bridgev2 uses.
	asTokenPrefix = "as_token:"
	// exampleDoublePuppetToken is the placeholder of mautrix's example.
	exampleDoublePuppetToken = "as_token:foobar"
)

// savedSettings is what the configuration file itself holds, as opposed
// to what mautrix filled in when it loaded it.
type savedSettings struct {
	// pickleKey is encryption.pickle_key as written in the file.
	pickleKey string
	// pickleKeyFromEnv is set when the environment gives the pickle key
	// (env_config_prefix).
	pickleKeyFromEnv bool
}

// readSavedSettings reads the file mautrix loaded (and, unless it could
// not or was told not to, wrote back).
func readSavedSettings(path string, cfg *bridgeconfig.Config) savedSettings {
	var saved savedSettings
	if cfg.EnvConfigPrefix != "" {
		for _, name := range []string{"ENCRYPTION__PICKLE_KEY", "ENCRYPTION__PICKLE_KEY_FILE", "ENCRYPTION.PICKLE_KEY", "ENCRYPTION.PICKLE_KEY_FILE"} {
			if _, ok := os.LookupEnv(cfg.EnvConfigPrefix + name); ok {
				saved.pickleKeyFromEnv = true
			}
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return saved
	}
	var file struct {
		Encryption struct {
			PickleKey string `yaml:"pickle_key"`
		} `yaml:"encryption"`
	}
	if yaml.Unmarshal(data, &file) == nil {
		saved.pickleKey = file.Encryption.PickleKey
	}
	return saved
}

// unsafeSettings lists, in the operator's words, the combinations the
// bridge refuses to start with.
func unsafeSettings(cfg *bridgeconfig.Config, saved savedSettings) []string {
	var problems []string
	enc := cfg.Encryption
	if !enc.Allow && (enc.Default || enc.Require) {
		problems = append(problems, "encryption.default and encryption.require need encryption.allow: without it the bridge cannot read or write the encrypted rooms it would create")
	}
	if enc.Require && !enc.Default {
		problems = append(problems, "encryption.require without encryption.default: the bridge would create unencrypted rooms and then drop every message in them")
	}
	if enc.Allow {
		switch {
		case !saved.pickleKeyFromEnv && (saved.pickleKey == "" || saved.pickleKey == "generate"):
			problems = append(problems, "encryption.pickle_key: the generated key was not saved in the configuration file (it is read-only, or the bridge ran with --no-update), so a new one would be made at every start and the bridge's encryption keys lost; set one yourself, e.g. the output of `openssl rand -hex 32`")
		case len(enc.PickleKey) < minPickleKeyLength:
			problems = append(problems, fmt.Sprintf("encryption.pickle_key: %d characters; at least %d, e.g. the output of `openssl rand -hex 32`", len(enc.PickleKey), minPickleKeyLength))
		}
		if enc.Appservice && !cfg.AppService.EphemeralEvents {
			problems = append(problems, "encryption.appservice needs appservice.ephemeral_events: true (and the registration generated again, and Synapse's experimental features for MSC2409 and MSC3202); without them the bridge never receives room keys")
		}
		if enc.PlaintextMentions {
			problems = append(problems, "encryption.plaintext_mentions: would tell the homeserver who is mentioned in encrypted messages; leave it false")
		}
		if share := enc.VerificationLevels.Share; enc.AllowKeySharing && share < id.TrustStateCrossSignedTOFU {
			problems = append(problems, fmt.Sprintf("encryption.verification_levels.share: %s with allow_key_sharing would hand a room's past keys to any new device of a member (or of whoever took over their password); use cross-signed-tofu (the default) or stricter", share))
		}
	}
	for server, secret := range cfg.DoublePuppet.Secrets {
		if !strings.HasPrefix(secret, asTokenPrefix) {
			problems = append(problems, fmt.Sprintf("double_puppet.secrets.%s: the bridge only uses appservice tokens here, written as_token:<token of a second registration>; any other secret is ignored and nobody gets double puppeting", server))
			continue
		}
		if server != cfg.Homeserver.Domain {
			continue
		}
		token := strings.TrimPrefix(secret, asTokenPrefix)
		switch {
		case secret == exampleDoublePuppetToken:
			problems = append(problems, fmt.Sprintf("double_puppet.secrets.%s: still the example's token; give the as_token of the double puppeting registration (docs/operator-guide.md, Double puppeting)", server))
		case subtle.ConstantTimeCompare([]byte(token), []byte(cfg.AppService.ASToken)) == 1:
			problems = append(problems, fmt.Sprintf("double_puppet.secrets.%s: the bridge's own as_token, whose registration covers only the bridge's ghosts; double puppeting needs a second registration for the homeserver's users (docs/operator-guide.md, Double puppeting)", server))
		case len(token) < minDoublePuppetTokenLength:
			problems = append(problems, fmt.Sprintf("double_puppet.secrets.%s: a token of %d characters may act as every user of the homeserver; use at least %d random ones", server, len(token), minDoublePuppetTokenLength))
		}
	}
	return problems
}
