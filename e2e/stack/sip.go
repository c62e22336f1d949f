package stack

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/testpki"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// SIPPKI is the private PKI of a SIP stack, as an organisation has one for
// its SfB pools: a CA the bridge trusts through ca_file, the certificate of
// the simulator's SIP listener, and the certificate of the bridge as a
// trusted application.
type SIPPKI struct {
	// CAFile is the CA certificate (PEM): the bridge's ca_file.
	CAFile string
	// Server is the TLS configuration of the simulator's listener: a
	// certificate for 127.0.0.1, localhost and the Front End's FQDN, and
	// the CA as the issuer of client certificates, which the simulator
	// verifies when a peer presents one (trusted applications).
	Server *tls.Config
	// AppFQDN is the trusted application's FQDN, the name its
	// certificate carries; CertFile and KeyFile hold that certificate.
	AppFQDN, CertFile, KeyFile string
}

// NewSIPPKI makes the PKI and writes its files into dir: the Front End
// named feFQDN, the trusted application appFQDN.
func NewSIPPKI(dir, feFQDN, appFQDN string) (*SIPPKI, error) {
	if feFQDN == "" || appFQDN == "" {
		return nil, errors.New("sip pki: both FQDNs are required")
	}
	ca, err := testpki.NewCA("sfb-matrix-bridge test CA")
	if err != nil {
		return nil, err
	}
	fe, err := ca.Issue(testpki.Leaf{CommonName: feFQDN, DNSNames: []string{feFQDN, "localhost"},
		IPs: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, Server: true})
	if err != nil {
		return nil, err
	}
	// SfB's trusted application certificates serve both ends of mutual
	// TLS.
	app, err := ca.Issue(testpki.Leaf{CommonName: appFQDN, DNSNames: []string{appFQDN}, Client: true, Server: true})
	if err != nil {
		return nil, err
	}
	p := &SIPPKI{
		CAFile:   filepath.Join(dir, "sip-ca.pem"),
		AppFQDN:  appFQDN,
		CertFile: filepath.Join(dir, "sip-app.pem"),
		KeyFile:  filepath.Join(dir, "sip-app.key"),
		Server: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{fe.TLS},
			ClientCAs:    ca.Pool(),
			ClientAuth:   tls.VerifyClientCertIfGiven,
		},
	}
	if err := os.WriteFile(p.CAFile, ca.PEM, 0o644); err != nil {
		return nil, fmt.Errorf("write sip ca file: %w", err)
	}
	if err := app.WriteFiles(p.CertFile, p.KeyFile); err != nil {
		return nil, err
	}
	return p, nil
}

// SIP puts the bridge on the SIP transport (Options.SIP).
type SIP struct {
	// Mode is sfb.SIPModePerUser or sfb.SIPModeTrusted.
	Mode string
	// Server is host:port of the simulator's TLS listener.
	Server string
	PKI    *SIPPKI
}

// network is the network section's entries for s.
func (s *SIP) network() (map[string]any, error) {
	if s.PKI == nil || s.Server == "" {
		return nil, errors.New("stack: Options.SIP needs a server and a PKI")
	}
	section := map[string]any{"mode": s.Mode, "server": s.Server}
	switch s.Mode {
	case sfb.SIPModePerUser:
	case sfb.SIPModeTrusted:
		section["cert_file"] = s.PKI.CertFile
		section["key_file"] = s.PKI.KeyFile
		section["application_fqdn"] = s.PKI.AppFQDN
	default:
		return nil, fmt.Errorf("stack: SIP mode %q", s.Mode)
	}
	return map[string]any{"transport": sfb.TransportSIP, "ca_file": s.PKI.CAFile, "sip": section}, nil
}

// The simulated topology's names: the Front End, and the bridge as a
// trusted application. The simulator's sim.SIPOptions take them (FQDN,
// TrustedApplications).
const (
	SimFrontEnd = "fe01.contoso.com"
	SimAppFQDN  = "sfb-bridge.contoso.com"
)

// SIPServer serves SIP on a listener: the simulator.
type SIPServer interface {
	ServeSIP(ln net.Listener, tlsConf *tls.Config) error
}

// ServeSIP makes the PKI in dir, starts srv's SIP listener over TLS on
// loopback and returns how the bridge reaches it in mode, and the listener
// (closing it stops serving). An error of srv's ServeSIP goes to logErr.
func ServeSIP(dir string, srv SIPServer, mode string, logErr func(error)) (*SIP, net.Listener, error) {
	pki, err := NewSIPPKI(dir, SimFrontEnd, SimAppFQDN)
	if err != nil {
		return nil, nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, fmt.Errorf("listen for SIP: %w", err)
	}
	go func() {
		if err := srv.ServeSIP(ln, pki.Server); err != nil {
			logErr(err)
		}
	}()
	return &SIP{Mode: mode, Server: ln.Addr().String(), PKI: pki}, ln, nil
}
