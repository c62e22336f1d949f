// Package secret seals the secrets the bridge keeps at rest (SfB passwords
// and OAuth tokens) with AES-256-GCM, and keeps secrets held in memory out of
// logs.
//
// The bridge reads its 32-byte key from configuration or from the environment
// variable SFB_BRIDGE_SECRET_KEY (see [EnvKey]); which one wins is decided by
// the configuration layer, not here. A key is written as standard or
// URL-safe base64 (padded or not) or as 64 hexadecimal characters; generate
// one with [GenerateKey] and [EncodeKey].
//
// A sealed value is
//
//	version (1 byte) | nonce (12 bytes) | AES-256-GCM ciphertext and tag
//
// The version byte lets a later release change the key or the algorithm
// while still opening what older releases sealed. It is authenticated
// together with the caller's associated data, which binds a ciphertext to the
// row it belongs to (for example the login ID): a ciphertext copied to
// another row does not open.
package secret

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// EnvKey is the environment variable from which the bridge reads the secret
// key when the configuration does not hold one.
const EnvKey = "SFB_BRIDGE_SECRET_KEY"

// KeySize is the size of an AES-256 key in bytes.
const KeySize = 32

// versionAES256GCM marks values sealed with AES-256-GCM, a random 96-bit
// nonce and the single configured key.
const versionAES256GCM byte = 1

const nonceSize = 12

// Errors returned by [Box.Open]. They deliberately say nothing about which
// part of the input was wrong.
var (
	// ErrOpen means the value was not sealed with this key and associated
	// data, or was modified.
	ErrOpen = errors.New("secret: message authentication failed (wrong key, wrong associated data or modified value)")
	// ErrUnsupportedVersion means the value was sealed by a format this
	// release does not know.
	ErrUnsupportedVersion = errors.New("secret: unsupported sealed value version")
	// ErrTooShort means the value cannot be a sealed value at all.
	ErrTooShort = errors.New("secret: sealed value too short")
)

// Box seals and opens secrets with one key. It is safe for concurrent use.
type Box struct {
	aead cipher.AEAD
}

// NewBox returns a Box using key, which must be exactly [KeySize] bytes.
func NewBox(key []byte) (*Box, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("secret: key must be %d bytes, got %d", KeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("secret: create AES cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("secret: create GCM: %w", err)
	}
	return &Box{aead: aead}, nil
}

// Seal encrypts plaintext and binds it to associatedData (which is not
// stored; the same bytes must be given to Open).
func (b *Box) Seal(plaintext, associatedData []byte) ([]byte, error) {
	out := make([]byte, 1+nonceSize, 1+nonceSize+len(plaintext)+b.aead.Overhead())
	out[0] = versionAES256GCM
	if _, err := rand.Read(out[1 : 1+nonceSize]); err != nil {
		return nil, fmt.Errorf("secret: read random nonce: %w", err)
	}
	return b.aead.Seal(out, out[1:1+nonceSize], plaintext, additionalData(versionAES256GCM, associatedData)), nil
}

// Open decrypts a value produced by Seal with the same key and associated
// data.
func (b *Box) Open(sealed, associatedData []byte) ([]byte, error) {
	if len(sealed) < 1 {
		return nil, ErrTooShort
	}
	if sealed[0] != versionAES256GCM {
		return nil, fmt.Errorf("%w %d", ErrUnsupportedVersion, sealed[0])
	}
	if len(sealed) < 1+nonceSize+b.aead.Overhead() {
		return nil, ErrTooShort
	}
	nonce := sealed[1 : 1+nonceSize]
	plaintext, err := b.aead.Open(nil, nonce, sealed[1+nonceSize:], additionalData(sealed[0], associatedData))
	if err != nil {
		return nil, ErrOpen
	}
	return plaintext, nil
}

// additionalData authenticates the version byte with the caller's data, so
// that a value cannot be replayed under another version's rules.
func additionalData(version byte, associatedData []byte) []byte {
	ad := make([]byte, 0, 1+len(associatedData))
	ad = append(ad, version)
	return append(ad, associatedData...)
}

// GenerateKey returns a new random key.
func GenerateKey() ([]byte, error) {
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("secret: read random key: %w", err)
	}
	return key, nil
}

// EncodeKey writes key as padded standard base64, the form the example
// configuration shows.
func EncodeKey(key []byte) string {
	return base64.StdEncoding.EncodeToString(key)
}

// ParseKey decodes a key written as standard or URL-safe base64 (padded or
// not) or as 64 hexadecimal characters. Surrounding whitespace is ignored.
// Errors never contain the key.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("secret: key is empty")
	}
	if len(s) == 2*KeySize {
		if key, err := hex.DecodeString(s); err == nil {
			return key, nil
		}
	}
	encodings := []*base64.Encoding{
		base64.StdEncoding, base64.RawStdEncoding,
		base64.URLEncoding, base64.RawURLEncoding,
	}
	for _, enc := range encodings {
		key, err := enc.DecodeString(s)
		if err != nil {
			continue
		}
		if len(key) != KeySize {
			return nil, fmt.Errorf("secret: key decodes to %d bytes as base64, want %d (44 base64 or %d hexadecimal characters; generate one with 'openssl rand -base64 32')", len(key), KeySize, 2*KeySize)
		}
		return key, nil
	}
	return nil, fmt.Errorf("secret: key of %d characters is neither base64 nor %d hexadecimal characters", len(s), 2*KeySize)
}

// Equal reports whether two tokens are equal in time that depends on neither
// their contents nor their lengths.
func Equal(a, b string) bool {
	ha := sha256.Sum256([]byte(a))
	hb := sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}
