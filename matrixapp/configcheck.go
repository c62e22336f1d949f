package matrixapp

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"text/template"

	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/bridgeconfig"
	"maunium.net/go/mautrix/bridgev2/matrix/mxmain"
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

// configError is the message for an incomplete, unsafe or invalid
// configuration.
func configError(path string, problems, unsafe []string, networkErr error) string {
	var sb strings.Builder
	if len(problems) > 0 {
		fmt.Fprintf(&sb, "The configuration in %s is not filled in yet. Set these fields:\n", path)
		for _, p := range problems {
			fmt.Fprintf(&sb, "  - %s\n", p)
		}
	}
	if len(unsafe) > 0 {
		fmt.Fprintf(&sb, "The configuration in %s is not safe to run with. Change these fields:\n", path)
		for _, p := range unsafe {
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
	unsafe := unsafeSettings(cfg, readSavedSettings(path, cfg))
	var networkErr error
	if v, ok := network.(bridgev2.ConfigValidatingNetwork); ok {
		networkErr = v.ValidateConfig()
	}
	if len(problems) == 0 && len(unsafe) == 0 && networkErr == nil {
		return
	}
	fmt.Fprint(os.Stderr, configError(path, problems, unsafe, networkErr))
	os.Exit(11)
}

// checkBeforeRegistration does what -g needs before mxmain runs: mxmain
// only says "Homeserver domain is not set". It reads the configuration
// that -g would use and, when the homeserver is not filled in, lists every
// field still to fill in and exits with mxmain's code for it (20).
func checkBeforeRegistration(path string) {
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
	fmt.Fprint(os.Stderr, "Cannot generate the registration yet.\n"+configError(path, configProblems(&cfg, false), nil, nil))
	os.Exit(20)
}

// cliArgs is what the checks before mxmain need from its command line.
type cliArgs struct {
	// configPath is -c, default config.yaml.
	configPath string
	// generate is -g, example is -e.
	generate, example bool
}

// parseArgs finds -g, -e and the configuration path in mxmain's command
// line.
func parseArgs(args []string) cliArgs {
	a := cliArgs{configPath: "config.yaml"}
	for i := 0; i < len(args); i++ {
		arg := args[i]
		switch {
		case arg == "--":
			return a
		case arg == "-g" || arg == "--generate-registration":
			a.generate = true
		case arg == "-e" || arg == "--generate-example-config":
			a.example = true
		case (arg == "-c" || arg == "--config") && i+1 < len(args):
			i++
			a.configPath = args[i]
		case strings.HasPrefix(arg, "-c="):
			a.configPath = strings.TrimPrefix(arg, "-c=")
		case strings.HasPrefix(arg, "--config="):
			a.configPath = strings.TrimPrefix(arg, "--config=")
		}
	}
	return a
}

// exampleConfig is the example configuration as mxmain's -e writes it
// (network section, then mautrix's base filled in from the bridge's
// name), except that the bot's avatar is an empty string: the network has
// no icon, and the empty value mautrix writes is a YAML null, which its
// own loader then warns about on every start ("Ignoring incorrect config
// field type !!null at appservice->bot->avatar"); and that logging starts
// at level info, where no message text is logged.
func exampleConfig(network bridgev2.NetworkConnector) (string, error) {
	networkExample, _, _ := network.GetConfig()
	var sb strings.Builder
	sb.WriteString("# Network-specific config options\nnetwork:\n")
	for line := range strings.SplitSeq(networkExample, "\n") {
		sb.WriteString("    " + line + "\n")
	}
	sb.WriteString("\n")
	base := strings.Replace(mxmain.MatrixExampleConfigBase, "avatar: $<<.NetworkIcon>>", `avatar: "$<<.NetworkIcon>>"`, 1)
	tmpl, err := template.New("example-config.yaml").Delims("$<<", ">>").Parse(base)
	if err != nil {
		return "", fmt.Errorf("parse mautrix's example configuration: %w", err)
	}
	if err := tmpl.Execute(&sb, network.GetName()); err != nil {
		return "", fmt.Errorf("fill in mautrix's example configuration: %w", err)
	}
	text := sb.String()
	for _, e := range exampleEdits {
		if strings.Count(text, e.mautrix) != 1 {
			return "", fmt.Errorf("mautrix's example configuration no longer has the %s the bridge changes", e.what)
		}
		text = strings.Replace(text, e.mautrix, e.ours, 1)
	}
	return text, nil
}

// exampleEdits are the bridge's own defaults and words over mautrix's
// example.
var exampleEdits = []struct{ what, mautrix, ours string }{
	{"logging section", mautrixLogLevel, defaultLogLevel},
	{"encryption switches", mautrixEncryption, defaultEncryption},
	{"double puppeting secrets", mautrixDoublePuppetSecrets, defaultDoublePuppetSecrets},
}

// mautrix's example sets the minimum log level to debug, where its HTTP
// client logs the body of every request it sends, message text included.
// The bridge's example starts at info; debug and trace are for
// investigating (docs/operator-guide.md, Logging).
const (
	mautrixLogLevel = "logging:\n    min_level: debug\n"
	defaultLogLevel = "logging:\n    # info and above never carry message text; debug and trace do (docs/operator-guide.md).\n    min_level: info\n"
)

// writeExample does -e like mxmain (same file handling and messages),
// with exampleConfig, and exits.
func writeExample(path string, network bridgev2.NetworkConnector) {
	text, err := exampleConfig(network)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	switch path {
	case "-", "/dev/stdout":
		fmt.Print(text)
		os.Exit(0)
	case "/dev/stderr":
		fmt.Fprint(os.Stderr, text)
		os.Exit(0)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintln(os.Stderr, path, "already exists, please remove it if you want to generate a new example")
		os.Exit(1)
	}
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, "Failed to write the example config:", err)
		os.Exit(1)
	}
	fmt.Println("Wrote example config to", path)
	os.Exit(0)
}
