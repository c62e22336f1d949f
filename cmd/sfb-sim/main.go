// Command sfb-sim runs the Skype for Business simulator (a UCWA 2.0 server
// with scripted users and fault injection) as a standalone server for the
// demo, load tests and manual tests.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
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
		sipListen     = fs.String("sip-listen", "", "listen address for SIP over plain TCP (loopback only: nothing is encrypted), e.g. 127.0.0.1:5060")
		sipTLSListen  = fs.String("sip-tls-listen", "", "listen address for SIP over TLS, e.g. 127.0.0.1:5061 (needs -sip-cert and -sip-key)")
		sipCert       = fs.String("sip-cert", "", "PEM certificate (chain) of the SIP TLS listener")
		sipKey        = fs.String("sip-key", "", "PEM private key of the SIP TLS listener")
		sipClientCA   = fs.String("sip-client-ca", "", "PEM CA certificates that issue trusted applications' client certificates")
		sipTrusted    = fs.String("sip-trusted", "", "comma-separated FQDNs of trusted applications (their client certificate must name one)")
		sipFQDN       = fs.String("sip-fqdn", "", "the Front End's FQDN (NTLM targetname; default fe.sfb-sim.local)")
		sipExpiry     = fs.Duration("sip-registration-expiry", 7200*time.Second, "longest SIP registration granted")
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
		SIP:                     sim.SIPOptions{FQDN: *sipFQDN, RegistrationExpiry: *sipExpiry},
	}
	if *sipTrusted != "" {
		if *sipClientCA == "" {
			return errors.New("-sip-trusted needs -sip-client-ca (and -sip-tls-listen): trusted applications are known by their client certificates")
		}
		for _, name := range strings.Split(*sipTrusted, ",") {
			if name = strings.TrimSpace(name); name != "" {
				opts.SIP.TrustedApplications = append(opts.SIP.TrustedApplications, name)
			}
		}
	}
	sipTLS, err := sipTLSConfig(*sipTLSListen, *sipCert, *sipKey, *sipClientCA)
	if err != nil {
		return err
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
	errc := make(chan error, 3)
	go func() { errc <- srv.Serve(ln) }()
	log.Info().Str("discovery_url", s.DiscoveryURL()).Int("users", s.Users()).Str("control_api", base+"/sim/v1/").Msg("SfB simulator listening")
	fmt.Println(s.DiscoveryURL())

	for _, l := range []struct {
		addr string
		conf *tls.Config
	}{{*sipListen, nil}, {*sipTLSListen, sipTLS}} {
		if l.addr == "" {
			continue
		}
		sln, err := net.Listen("tcp", l.addr)
		if err != nil {
			return fmt.Errorf("listen for SIP: %w", err)
		}
		go func() {
			if err := s.ServeSIP(sln, l.conf); err != nil {
				errc <- fmt.Errorf("SIP: %w", err)
			}
		}()
		log.Info().Str("sip_address", sln.Addr().String()).Bool("tls", l.conf != nil).Msg("SIP front end listening")
	}

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

// sipTLSConfig loads the SIP TLS listener's certificate and the CAs of
// trusted applications' client certificates.
func sipTLSConfig(listen, certFile, keyFile, clientCA string) (*tls.Config, error) {
	if listen == "" {
		if certFile != "" || keyFile != "" || clientCA != "" {
			return nil, errors.New("-sip-cert, -sip-key and -sip-client-ca need -sip-tls-listen")
		}
		return nil, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, errors.New("-sip-tls-listen needs -sip-cert and -sip-key")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("-sip-cert/-sip-key: %w", err)
	}
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if clientCA != "" {
		pem, err := os.ReadFile(clientCA)
		if err != nil {
			return nil, fmt.Errorf("-sip-client-ca: %w", err)
		}
		conf.ClientCAs = x509.NewCertPool()
		if !conf.ClientCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-sip-client-ca %s: no PEM certificates", clientCA)
		}
	}
	return conf, nil
}
