package sip

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// readMessage reads one SIP message from a stream (the test's own framing:
// headers, then Content-Length bytes).
func readMessage(t *testing.T, r *bufio.Reader) sipmsg.Message {
	t.Helper()
	var head bytes.Buffer
	length := 0
	for {
		line, err := r.ReadString('\n')
		require.NoError(t, err)
		if line == "\r\n" && head.Len() == 0 {
			continue // keep-alive
		}
		head.WriteString(line)
		if line == "\r\n" {
			break
		}
		if name, val, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(name), "Content-Length") {
			length, err = strconv.Atoi(strings.TrimSpace(val))
			require.NoError(t, err)
		}
	}
	body := make([]byte, length)
	_, err := io.ReadFull(r, body)
	require.NoError(t, err)
	m, err := sipmsg.ParseMessage(append(head.Bytes(), body...))
	require.NoError(t, err)
	return m
}

// The server's requests for an endpoint are handled in the order they
// came, one after the other, and each endpoint on a shared connection
// keeps its own order: a raw server writes 40 requests for two users in
// one go and reads the answers back.
func TestDispatchInOrder(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	cfg := testConfig("tcp://" + ln.Addr().String())
	cfg.SIP.Mode, cfg.SIP.Connections = sfb.SIPModeTrusted, 1
	cert, _ := selfSigned(t, "bridge.contoso.com")
	tr := newTransport(t, cfg, WithTLSConfig(&tls.Config{Certificates: []tls.Certificate{cert}}))

	conns := make(chan net.Conn, 1)
	go func() {
		nc, err := ln.Accept()
		if err == nil {
			conns <- nc
		}
	}()
	signedIn := make(chan error, 2)
	for _, u := range []string{"alice@contoso.com", "bob@contoso.com"} {
		go func() {
			s, err := tr.SignIn(context.Background(), sfb.SignInRequest{Credentials: sfb.Credentials{SignInAddress: u}}, newEvents().handler)
			if err == nil {
				t.Cleanup(func() { _ = s.Close(context.Background()) })
			}
			signedIn <- err
		}()
	}
	nc := <-conns
	defer nc.Close()
	r := bufio.NewReader(nc)
	for range 2 {
		req := readMessage(t, r).(*sipmsg.Request)
		require.Equal(t, sipmsg.REGISTER, req.Method)
		res := sipmsg.NewResponseFromRequest(req, 200, "OK", nil)
		res.AppendHeader(sipmsg.NewHeader("Expires", "3600"))
		_, err := nc.Write([]byte(res.String()))
		require.NoError(t, err)
	}
	require.NoError(t, <-signedIn)
	require.NoError(t, <-signedIn)

	var burst bytes.Buffer
	for i := 1; i <= 20; i++ {
		for _, u := range []string{"alice", "bob"} {
			fmt.Fprintf(&burst, "OPTIONS sip:%[1]s@contoso.com SIP/2.0\r\n"+
				"Via: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bK%[1]s%[2]d\r\n"+
				"From: <sip:carol@contoso.com>;tag=c%[2]d\r\n"+
				"To: <sip:%[1]s@contoso.com>\r\n"+
				"Call-ID: %[1]s-call\r\n"+
				"CSeq: %[2]d OPTIONS\r\n"+
				"Max-Forwards: 70\r\n"+
				"Content-Length: 0\r\n\r\n", u, i)
		}
	}
	_, err = nc.Write(burst.Bytes())
	require.NoError(t, err)
	require.NoError(t, nc.SetReadDeadline(time.Now().Add(10*time.Second)))
	got := map[string][]uint32{}
	for range 40 {
		res := readMessage(t, r).(*sipmsg.Response)
		require.Equal(t, 200, res.StatusCode)
		got[res.To().Address.User] = append(got[res.To().Address.User], res.CSeq().SeqNo)
	}
	var want []uint32
	for i := uint32(1); i <= 20; i++ {
		want = append(want, i)
	}
	assert.Equal(t, want, got["alice"])
	assert.Equal(t, want, got["bob"])
}
