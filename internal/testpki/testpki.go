// Package testpki issues throwaway certificates for tests and the demo: a
// certificate authority made at run time, a server certificate for the
// simulator's SIP listener and client certificates for a trusted
// application, as an organisation's private PKI would. Nothing here is
// meant for production: the keys live in memory and in the files the
// caller asks for.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"time"
)

// lifetime of every certificate: long enough for any test run, short
// enough that a leaked one is worthless soon.
const lifetime = 24 * time.Hour

// CA is a certificate authority that exists for one run.
type CA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// PEM is the CA certificate, what a ca_file holds.
	PEM []byte
}

// NewCA makes a CA named name.
func NewCA(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("test CA key: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"sfb-matrix-bridge tests"}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(lifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("test CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("test CA certificate: %w", err)
	}
	return &CA{cert: cert, key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// Pool holds the CA alone: what a peer verifies certificates it issued
// with.
func (ca *CA) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	return pool
}

// Leaf describes a certificate to issue.
type Leaf struct {
	// CommonName is the subject's CN; SfB matches a trusted
	// application's certificate by it (the pool's FQDN) or by DNSNames.
	CommonName string
	DNSNames   []string
	IPs        []net.IP
	// Server and Client are the extended key usages; SfB's own
	// certificates carry both.
	Server, Client bool
}

// Issued is a certificate with its key.
type Issued struct {
	// CertPEM is the certificate followed by nothing else (the CA is
	// known to whoever verifies); KeyPEM its PKCS #8 key.
	CertPEM, KeyPEM []byte
	TLS             tls.Certificate
	Cert            *x509.Certificate
}

// Issue signs a certificate for leaf.
func (ca *CA) Issue(leaf Leaf) (*Issued, error) {
	if !leaf.Server && !leaf.Client {
		return nil, errors.New("test certificate: neither server nor client")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("test certificate key: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, err
	}
	var usage []x509.ExtKeyUsage
	if leaf.Server {
		usage = append(usage, x509.ExtKeyUsageServerAuth)
	}
	if leaf.Client {
		usage = append(usage, x509.ExtKeyUsageClientAuth)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: leaf.CommonName},
		DNSNames:     leaf.DNSNames,
		IPAddresses:  leaf.IPs,
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(lifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  usage,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("test certificate for %q: %w", leaf.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("test certificate for %q: %w", leaf.CommonName, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("test certificate key: %w", err)
	}
	return &Issued{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		TLS:     tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert},
		Cert:    cert,
	}, nil
}

// WriteFiles writes the certificate and key to certPath and keyPath, the
// key readable by the owner only.
func (c *Issued) WriteFiles(certPath, keyPath string) error {
	if err := os.WriteFile(certPath, c.CertPEM, 0o644); err != nil {
		return fmt.Errorf("write test certificate: %w", err)
	}
	if err := os.WriteFile(keyPath, c.KeyPEM, 0o600); err != nil {
		return fmt.Errorf("write test certificate key: %w", err)
	}
	return nil
}

func serialNumber() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("certificate serial number: %w", err)
	}
	return n, nil
}
