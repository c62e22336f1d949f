package matrixapp

import (
	"fmt"
	"os"
	"strings"

	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/bridgeconfig"
)

// operatorGuide is where an operator reads what each setting means.
const operatorGuide = "docs/operator-guide.md (section 2, Configuration)"

// The placeholders of the example configuration, which mxmain also looks
// for.
const (
	exampleAddress  = "http://example.localhost:8008"
	exampleDomain   = "example.com"
	exampleToken    = "This value is generated when generating the registration"
	exampleDatabase = "postgres://user:password@host/database?sslmode=disable"
)

// configProblems lists, in the operator's words, what the configuration
// still lacks; tokens are only asked for once a registration could have
// been generated.
func configProblems(cfg *bridgeconfig.Config, wantTokens bool) []string {
	var problems []string
	if cfg.Homeserver.Address == exampleAddress || cfg.Homeserver.Address == "" {
		problems = append(problems, "homeserver.address: how the bridge reaches the homeserver's client API, e.g. http://127.0.0.1:8008")
	}
	if cfg.Homeserver.Domain == exampleDomain || cfg.Homeserver.Domain == "" {
		problems = append(problems, "homeserver.domain: the server name, the part after ':' in Matrix user IDs, e.g. example.org")
	}
	if cfg.Database.URI == exampleDatabase || cfg.Database.URI == "" {
		problems = append(problems, "database.uri: the bridge's PostgreSQL database, e.g. postgres://sfb:password@db/sfb_bridge (or database.type: sqlite3-fk-wal with uri: file:sfb.db?_txlock=immediate)")
	}
	if !cfg.Bridge.Permissions.IsConfigured() {
		problems = append(problems, `bridge.permissions: who may use the bridge, e.g. "example.org": user and "@admin:example.org": admin`)
	}
	if wantTokens && (cfg.AppService.ASToken == exampleToken || cfg.AppService.HSToken == exampleToken) {
		problems = append(problems, "appservice.as_token, appservice.hs_token: run the bridge with -g to generate the registration; it fills them in")
	}
	return problems
}

// configError is the message for an incomplete or invalid configuration.
func configError(path string, problems []string, networkErr error) string {
	var sb strings.Builder
	if len(problems) > 0 {
		fmt.Fprintf(&sb, "The configuration in %s is not filled in yet. Set these fields:\n", path)
		for _, p := range problems {
			fmt.Fprintf(&sb, "  - %s\n", p)
		}
	}
	if networkErr != nil {
		fmt.Fprintf(&sb, "The network section of %s is not valid: %v\n", path, networkErr)
	}
	fmt.Fprintf(&sb, "See %s for every setting.\n", operatorGuide)
	return sb.String()
}

// checkConfig exits with mxmain's configuration error code (11) and the
// bridge's own words when the loaded configuration cannot run, before
// mxmain would answer with its generic words and a FAQ link.
func checkConfig(path string, cfg *bridgeconfig.Config, network bridgev2.NetworkConnector) {
	problems := configProblems(cfg, true)
	var networkErr error
	if v, ok := network.(bridgev2.ConfigValidatingNetwork); ok {
		networkErr = v.ValidateConfig()
	}
	if len(problems) == 0 && networkErr == nil {
		return
	}
	fmt.Fprint(os.Stderr, configError(path, problems, networkErr))
	os.Exit(11)
}

// checkBeforeRegistration does what -g needs before mxmain runs: mxmain
// only says "Homeserver domain is not set". It reads the configuration
// that -g would use and, when the homeserver is not filled in, lists every
// field still to fill in and exits with mxmain's code for it (20).
func checkBeforeRegistration(args []string) {
	path, generate := registrationArgs(args)
	if !generate {
		return
	}
	data, err := os.ReadFile(path)
	if err != nil {
		// mxmain says what is wrong with the file.
		return
	}
	var cfg bridgeconfig.Config
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		return
	}
	if cfg.Homeserver.Domain != exampleDomain && cfg.Homeserver.Domain != "" {
		return
	}
	fmt.Fprint(os.Stderr, "Cannot generate the registration yet.\n"+configError(path, configProblems(&cfg, false), nil))
	os.Exit(20)
}

// registrationArgs finds -g and the configuration path (-c, default
// config.yaml) in mxmain's command line.
func registrationArgs(args []string) (path string, generate bool) {
	path = "config.yaml"
	for i := 0; i < len(args); i++ {
		arg := args[i]
		switch {
		case arg == "--":
			return path, generate
		case arg == "-g" || arg == "--generate-registration":
			generate = true
		case (arg == "-c" || arg == "--config") && i+1 < len(args):
			i++
			path = args[i]
		case strings.HasPrefix(arg, "-c="):
			path = strings.TrimPrefix(arg, "-c=")
		case strings.HasPrefix(arg, "--config="):
			path = strings.TrimPrefix(arg, "--config=")
		}
	}
	return path, generate
}
