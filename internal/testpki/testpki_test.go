package testpki

import (
	"crypto/tls"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// handshake runs a mutual TLS handshake over loopback TCP: the server verifies
// client certificates against serverCA, the client the server's against
// clientCA for serverName. It returns the certificate the server saw and
// the client's error.
func handshake(t *testing.T, serverCA, clientCA *CA, server, client *Issued, serverName string) (seen string, clientErr error) {
	t.Helper()
	// Over TCP, not net.Pipe: the server writes session tickets and
	// alerts after the client's handshake returned, which a synchronous
	// pipe nobody reads would block forever.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	b, err := net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	defer b.Close()
	a, err := l.Accept()
	require.NoError(t, err)
	defer a.Close()
	srv := tls.Server(a, &tls.Config{
		Certificates: []tls.Certificate{server.TLS},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    serverCA.Pool(),
	})
	done := make(chan string, 1)
	go func() {
		if srv.Handshake() != nil {
			done <- ""
			return
		}
		done <- srv.ConnectionState().PeerCertificates[0].Subject.CommonName
	}()
	cli := tls.Client(b, &tls.Config{
		RootCAs:      clientCA.Pool(),
		ServerName:   serverName,
		Certificates: []tls.Certificate{client.TLS},
	})
	clientErr = cli.Handshake()
	if clientErr != nil {
		// The server waits for the rest of a handshake that will not
		// come.
		b.Close()
	}
	return <-done, clientErr
}

func TestMutualTLS(t *testing.T) {
	ca, err := NewCA("test CA")
	require.NoError(t, err)
	server, err := ca.Issue(Leaf{CommonName: "sip.contoso.com", DNSNames: []string{"sip.contoso.com"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true})
	require.NoError(t, err)
	client, err := ca.Issue(Leaf{CommonName: "bridge.contoso.com", DNSNames: []string{"bridge.contoso.com"}, Client: true, Server: true})
	require.NoError(t, err)

	seen, clientErr := handshake(t, ca, ca, server, client, "sip.contoso.com")
	require.NoError(t, clientErr)
	assert.Equal(t, "bridge.contoso.com", seen, "the server sees the trusted application's name")

	// Verification is real: another CA's certificates are refused, and a
	// name the server certificate does not carry.
	other, err := NewCA("other CA")
	require.NoError(t, err)
	_, clientErr = handshake(t, ca, other, server, client, "sip.contoso.com")
	assert.Error(t, clientErr, "a server certificate of an unknown CA")
	_, clientErr = handshake(t, ca, ca, server, client, "pool.fabrikam.com")
	assert.Error(t, clientErr, "a server certificate for another name")
	stranger, err := other.Issue(Leaf{CommonName: "bridge.contoso.com", Client: true})
	require.NoError(t, err)
	seen, _ = handshake(t, ca, ca, server, stranger, "sip.contoso.com")
	assert.Empty(t, seen, "the server accepted a client certificate of an unknown CA")
}
