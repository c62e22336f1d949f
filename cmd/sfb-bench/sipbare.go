package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/rs/zerolog"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sip/sipae"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sip/sipconn"
)

// The bare client of the SIP scenarios' baselines: REGISTERs written
// straight onto sipconn connections, with what an SfB client sends and
// nothing else (no transport, no sessions, no refresh, no rate). It shows
// what the simulator and sipconn allow.

// bareRegister builds a REGISTER of user as pidgin-sipe's do_register
// does; authz, when not empty, is its Authorization.
func bareRegister(user, contact, callID, tag string, cseq uint32, authz string) *sip.Request {
	domain := user[strings.LastIndexByte(user, '@')+1:]
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: domain})
	for _, h := range [][2]string{
		{"From", "<sip:" + user + ">;tag=" + tag + ";epid=" + tag[:8]},
		{"To", "<sip:" + user + ">"},
		{"Call-ID", callID},
		{"CSeq", fmt.Sprintf("%d REGISTER", cseq)},
		{"Max-Forwards", "70"},
		{"Contact", contact + `;methods="INVITE, MESSAGE, INFO, SUBSCRIBE, OPTIONS, BYE, CANCEL, NOTIFY, ACK, REFER, BENOTIFY";proxy=replace;+sip.instance="<urn:uuid:` + randomHex(16) + `>"`},
		{"User-Agent", "sfb-bench bare client"},
		{"Supported", "gruu-10, adhoclist, msrtc-event-categories, com.microsoft.msrtc.presence"},
		{"Event", "registration"},
		{"Allow-Events", "presence"},
		{"ms-keep-alive", "UAC;hop-hop=yes"},
	} {
		req.AppendHeader(sip.NewHeader(h[0], h[1]))
	}
	if authz != "" {
		req.AppendHeader(sip.NewHeader("Authorization", authz))
	}
	return req
}

// bareConn wraps nc in a sipconn.Conn that answers whatever the server
// sends (registration notifications) with 200.
func bareConn(nc net.Conn) *sipconn.Conn {
	return sipconn.New(context.Background(), nc, sipconn.Options{Logger: zerolog.Nop(), Handler: func(c *sipconn.Conn, req *sip.Request) {
		if !req.IsAck() {
			_ = c.Respond(req, 200, "OK", nil)
		}
	}})
}

func contactOf(c *sipconn.Conn, transport, host string) string {
	_, port, _ := net.SplitHostPort(c.LocalAddr().String())
	return "<sip:" + net.JoinHostPort(host, port) + ";transport=" + transport + ";ms-opaque=" + randomHex(5) + ">"
}

// rawTrustedRegistrations registers users 1..n as the trusted application
// over opts.sipConnections mutual-TLS connections.
func rawTrustedRegistrations(ctx context.Context, out io.Writer, simp *simProcess, users sipUsers, n int, opts options) SIPRegistrations {
	tc, err := clientTLS(simp.tls)
	if err != nil {
		return SIPRegistrations{FirstError: err.Error()}
	}
	conns := make([]*sipconn.Conn, opts.sipConnections)
	for i := range conns {
		d := tls.Dialer{Config: tc}
		nc, err := d.DialContext(ctx, "tcp", simp.sipTLS)
		if err != nil {
			return SIPRegistrations{FirstError: fmt.Sprintf("connect: %v", err)}
		}
		conns[i] = bareConn(nc)
		defer conns[i].Close()
	}
	return signInAll(ctx, out, fmt.Sprintf("sip-scale %d bare client", n), time.Now(), n, opts.sipConcurrency, simp.pid(), func(ctx context.Context, i int) error {
		c := conns[i%len(conns)]
		res, err := c.Do(ctx, bareRegister(generatedUser(i, users.total), contactOf(c, "tls", benchApplication), randomHex(8), randomHex(8), 1, ""))
		if err != nil {
			return err
		}
		if res.StatusCode != 200 {
			return fmt.Errorf("REGISTER: %d %s", res.StatusCode, res.Reason)
		}
		return nil
	})
}

func clientTLS(f tlsFiles) (*tls.Config, error) {
	pem, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, errors.New("no CA certificate in " + f.CA)
	}
	cert, err := tls.LoadX509KeyPair(f.ClientCert, f.ClientKey)
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}, ServerName: simFQDN, MinVersion: tls.VersionTLS12}, nil
}

// rawPerUserSignIns signs users from..from+n-1 in, each over its own TCP
// connection with the MS-SIPAE NTLM handshake, as pidgin-sipe does: three
// REGISTERs, the last signed.
func rawPerUserSignIns(ctx context.Context, out io.Writer, simp *simProcess, users sipUsers, from, n int, opts options) SIPRegistrations {
	var mu sync.Mutex
	var conns []*sipconn.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	return signInAll(ctx, out, fmt.Sprintf("sip-per-user %d bare client", n), time.Now(), n, opts.loginConcurrency, simp.pid(), func(ctx context.Context, i int) error {
		var d net.Dialer
		nc, err := d.DialContext(ctx, "tcp", simp.sipTCP)
		if err != nil {
			return err
		}
		c := bareConn(nc)
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
		return bareNTLMRegister(ctx, c, generatedUser(from+i-1, users.total), sim.GeneratedPassword)
	})
}

func bareNTLMRegister(ctx context.Context, c *sipconn.Conn, user, password string) error {
	contact, callID, tag := contactOf(c, "tcp", "127.0.0.1"), randomHex(8), randomHex(8)
	register := func(cseq uint32, authz string, want int) (*sip.Response, error) {
		res, err := c.Do(ctx, bareRegister(user, contact, callID, tag, cseq, authz))
		if err != nil {
			return nil, err
		}
		if res.StatusCode != want {
			return nil, fmt.Errorf("REGISTER %d: %d %s, want %d", cseq, res.StatusCode, res.Reason, want)
		}
		return res, nil
	}
	res, err := register(1, "", 401)
	if err != nil {
		return err
	}
	offer, err := ntlmOffer(res)
	if err != nil {
		return err
	}
	client := sipae.NewClient(user, "", password)
	_, ir, err := client.Start()
	if err != nil {
		return err
	}
	if res, err = register(2, sipae.Credentials(offer, ir).String(), 401); err != nil {
		return err
	}
	challenge, err := ntlmOffer(res)
	if err != nil {
		return err
	}
	token, err := client.Next(challenge.GSSAPIData)
	if err != nil {
		return fmt.Errorf("NTLM: %w", err)
	}
	sa, err := client.SA(challenge)
	if err != nil {
		return err
	}
	final := bareRegister(user, contact, callID, tag, 3, "")
	fields, err := sipae.FieldsFrom(func(name string) string {
		if h := final.GetHeader(name); h != nil {
			return h.Value()
		}
		return ""
	}, 0)
	if err != nil {
		return err
	}
	sig, err := sa.Sign(fields)
	if err != nil {
		return err
	}
	authz := sipae.Credentials(challenge, token)
	authz.CRand, authz.CNum, authz.Response = sig.CRand, sig.CNum, sig.Response
	final.AppendHeader(sip.NewHeader("Authorization", authz.String()))
	res, err = c.Do(ctx, final)
	if err != nil {
		return err
	}
	if res.StatusCode != 200 {
		return fmt.Errorf("REGISTER 3: %d %s", res.StatusCode, res.Reason)
	}
	return nil
}

// ntlmOffer finds the NTLM parameters among a 401's WWW-Authenticate.
func ntlmOffer(res *sip.Response) (*sipae.Params, error) {
	for _, h := range res.GetHeaders("WWW-Authenticate") {
		if strings.HasPrefix(strings.ToUpper(strings.TrimSpace(h.Value())), "NTLM") {
			return sipae.ParseHeader(h.Value())
		}
	}
	return nil, errors.New("no NTLM in the 401")
}
