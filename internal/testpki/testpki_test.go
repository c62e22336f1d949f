package testpki

import (
	"crypto/tls"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// handshake runs a mutual TLS handshake over a pipe: the server verifies
// client certificates against serverCA, the client the server's against
// clientCA for serverName. It returns the client's error and the
// certificate the server saw.
func handshake(t *testing.T, serverCA, clientCA *CA, server, client *Issued, serverName string) (clientErr error, seen string) {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
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
	return clientErr, <-done
}

func TestMutualTLS(t *testing.T) {
	ca, err := NewCA("test CA")
	require.NoError(t, err)
	server, err := ca.Issue(Leaf{CommonName: "sip.contoso.com", DNSNames: []string{"sip.contoso.com"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true})
	require.NoError(t, err)
	client, err := ca.Issue(Leaf{CommonName: "bridge.contoso.com", DNSNames: []string{"bridge.contoso.com"}, Client: true, Server: true})
	require.NoError(t, err)

	clientErr, seen := handshake(t, ca, ca, server, client, "sip.contoso.com")
	require.NoError(t, clientErr)
	assert.Equal(t, "bridge.contoso.com", seen, "the server sees the trusted application's name")

	// Verification is real: another CA's certificates are refused, and a
	// name the server certificate does not carry.
	other, err := NewCA("other CA")
	require.NoError(t, err)
	clientErr, _ = handshake(t, ca, other, server, client, "sip.contoso.com")
	assert.Error(t, clientErr, "a server certificate of an unknown CA")
	clientErr, _ = handshake(t, ca, ca, server, client, "pool.fabrikam.com")
	assert.Error(t, clientErr, "a server certificate for another name")
	stranger, err := other.Issue(Leaf{CommonName: "bridge.contoso.com", Client: true})
	require.NoError(t, err)
	_, seen = handshake(t, ca, ca, server, stranger, "sip.contoso.com")
	assert.Empty(t, seen, "the server accepted a client certificate of an unknown CA")
}
