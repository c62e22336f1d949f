// Command sfb-sim runs the Skype for Business simulator (a UCWA 2.0 server
// with scripted users and fault injection) as a standalone server for the
// demo, load tests and manual tests.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "sfb-sim:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("sfb-sim", flag.ContinueOnError)
	var (
		listen        = fs.String("listen", "127.0.0.1:8080", "listen address (loopback by default; the control API has no authentication)")
		baseURL       = fs.String("base-url", "", "public base URL written into discovery documents (default http://<listen>)")
		usersCSV      = fs.String("users-csv", "", "CSV file of users with header uri,display_name,password")
		generate      = fs.Int("users", 0, "generate this many users user00001@<domain> ... with password \"password\"")
		domain        = fs.String("domain", "contoso.com", "domain of generated users")
		colleague     = fs.String("colleague", "", "SIP URI of a scripted colleague who greets every UCWA user and answers their messages")
		colleagueWait = fs.Duration("colleague-typing", time.Second, "how long the colleague shows typing before each message")
		eventWait     = fs.Duration("event-wait", 180*time.Second, "how long a pending GET on events is held without events")
		aggregation   = fs.Duration("event-aggregation", 5*time.Second, "how long medium-priority events are held to be batched")
		convIdle      = fs.Duration("conversation-idle", 10*time.Minute, "conversations end after this idle time")
		appIdle       = fs.Duration("application-idle", 15*time.Minute, "applications whose event channel is not polled expire after this time")
		tokenLife     = fs.Duration("token-lifetime", 8*time.Hour, "OAuth token lifetime")
		inviteTimeout = fs.Duration("invitation-timeout", 30*time.Second, "unanswered messaging invitations fail after this time")
		base64Msgs    = fs.Bool("base64-messages", false, "write every message data URI base64-encoded (default: only non-ASCII text)")
		logLevel      = fs.String("log-level", "info", "log level (debug, info, warn, error)")
		logJSON       = fs.Bool("log-json", false, "log JSON instead of human-readable lines")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	level, err := zerolog.ParseLevel(*logLevel)
	if err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	log := zerolog.New(os.Stderr).Level(level).With().Timestamp().Logger()
	if !*logJSON {
		log = log.Output(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.TimeOnly})
	}

	var users []sim.User
	if *usersCSV != "" {
		f, err := os.Open(*usersCSV)
		if err != nil {
			return fmt.Errorf("-users-csv: %w", err)
		}
		users, err = sim.LoadUsersCSV(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("-users-csv %s: %w", *usersCSV, err)
		}
	}
	if *usersCSV == "" && *generate <= 0 && *colleague == "" {
		return errors.New("no users: give -users-csv, -users N or -colleague")
	}
	opts := sim.Options{
		Users:                   users,
		Logger:                  log,
		TokenLifetime:           *tokenLife,
		EventWait:               *eventWait,
		EventAggregation:        *aggregation,
		ConversationIdleTimeout: *convIdle,
		ApplicationIdleTimeout:  *appIdle,
		InvitationTimeout:       *inviteTimeout,
		Base64Messages:          *base64Msgs,
		ColleagueTypingDelay:    *colleagueWait,
	}
	if *colleague != "" {
		c, err := sfb.ParseURI(*colleague)
		if err != nil {
			return fmt.Errorf("-colleague: %w", err)
		}
		opts.Colleague = c
	}
	s, err := sim.New(opts)
	if err != nil {
		return err
	}
	defer s.Close()
	if *generate > 0 {
		n := len(s.GenerateUsers(*generate, *domain))
		log.Info().Int("users", n).Str("domain", *domain).Msg("generated users")
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	base := *baseURL
	if base == "" {
		base = "http://" + ln.Addr().String()
	}
	s.SetBaseURL(base)
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info().Str("discovery_url", s.DiscoveryURL()).Int("users", s.Users()).Str("control_api", base+"/sim/v1/").Msg("SfB simulator listening")
	fmt.Println(s.DiscoveryURL())

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info().Msg("shutting down")
	// Pending GETs are released by Close; give ordinary requests a moment.
	_ = s.Close()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
