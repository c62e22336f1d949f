package sfb

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
)

// LoadCAFile adds the certificates of a PEM file (Config.CAFile) to the
// system's roots. Unlike x509.CertPool.AppendCertsFromPEM it does not skip
// what it cannot use: a corrupt certificate or a key in the file is a
// mistake the operator should hear about at start, not as a TLS failure
// later. The errors name the file.
func LoadCAFile(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read ca_file: %w", err)
	}
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	n := 0
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			if n == 0 {
				return nil, fmt.Errorf("ca_file %s holds no PEM certificates", path)
			}
			return roots, nil
		}
		n++
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("ca_file %s: PEM block %d is a %s, not a CERTIFICATE", path, n, block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("ca_file %s: certificate %d: %w", path, n, err)
		}
		roots.AddCert(cert)
	}
}
