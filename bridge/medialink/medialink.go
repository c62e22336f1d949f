// Package medialink signs and verifies the links through which SfB users
// fetch files that Matrix users sent: SfB cannot carry a file in a
// message, so the message carries a link to the bridge's own listener,
// which streams the file from the homeserver.
//
// A link names the media (mxc server and media ID), when it expires and
// the file name, and carries an HMAC-SHA256 over all three under a key
// from the configuration:
//
//	<public URL>/sfb/media/v1/<server>/<media ID>/<expiry, Unix seconds>/<MAC, base64url>/<file name>
//
// Whoever holds a link gets that one file until it expires, and nothing
// else: changing any part of it breaks the MAC. The homeserver's token
// never leaves the bridge. Files from encrypted rooms have links of their
// own kind, which also carry the file's key, sealed (encrypted.go).
package medialink

import (
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"maunium.net/go/mautrix/crypto/attachment"
	"maunium.net/go/mautrix/id"
)

// PathPrefix is where the links live on the bridge's listener; a reverse
// proxy in front of the bridge must pass it through.
const PathPrefix = "/sfb/media/v1/"

// Route is the pattern of a link on an http.ServeMux.
const Route = "GET " + PathPrefix + "{server}/{mediaID}/{expiry}/{mac}/{name}"

// MinKeySize is the shortest key accepted: HMAC-SHA256 gains nothing from
// keys longer than its block, and loses from keys shorter than its output.
const MinKeySize = 32

// maxNameBytes bounds the file name kept in a link; longer names are cut
// (on a rune boundary) so that links stay usable in a chat message.
const maxNameBytes = 120

// linkEncoding reads the MAC and sealed parts of a link: strict, so that
// each has one spelling and a changed character never still verifies.
var linkEncoding = base64.RawURLEncoding.Strict()

// Errors of [Signer.Verify]. A link that does not verify says nothing about
// which part was wrong.
var (
	ErrInvalid = errors.New("medialink: link is not valid")
	ErrExpired = errors.New("medialink: link has expired")
)

// Media is what a verified link grants: one file, under one name.
type Media struct {
	URI  id.ContentURI
	Name string
	// File, for a file from an encrypted room, is how to decrypt and
	// check what the homeserver serves; MediaType is then what the
	// sender said the file is.
	File      *attachment.EncryptedFile
	MediaType string
}

// Signer makes and checks links.
type Signer struct {
	key      []byte
	seal     cipher.AEAD
	base     string
	lifetime time.Duration
	now      func() time.Time
}

// NewSigner returns a signer whose links start with publicURL (scheme and
// host, optionally a path, without the trailing slash) and live for
// lifetime.
func NewSigner(key []byte, publicURL string, lifetime time.Duration) (*Signer, error) {
	if len(key) < MinKeySize {
		return nil, fmt.Errorf("medialink: key of %d bytes, need at least %d", len(key), MinKeySize)
	}
	if lifetime <= 0 {
		return nil, fmt.Errorf("medialink: lifetime %s must be positive", lifetime)
	}
	if err := CheckPublicURL(publicURL); err != nil {
		return nil, err
	}
	seal, err := newSeal(key)
	if err != nil {
		return nil, err
	}
	return &Signer{
		key:      append([]byte(nil), key...),
		seal:     seal,
		base:     strings.TrimRight(publicURL, "/"),
		lifetime: lifetime,
		now:      time.Now,
	}, nil
}

// CheckPublicURL reports whether u can start a link: an absolute http(s)
// URL without query or fragment.
func CheckPublicURL(u string) error {
	parsed, err := url.Parse(u)
	switch {
	case err != nil:
		return fmt.Errorf("medialink: public URL %q: %w", u, err)
	case parsed.Scheme != "https" && parsed.Scheme != "http":
		return fmt.Errorf("medialink: public URL %q must start with https:// (or http:// for tests)", u)
	case parsed.Host == "":
		return fmt.Errorf("medialink: public URL %q has no host", u)
	case parsed.RawQuery != "" || parsed.Fragment != "" || parsed.User != nil:
		return fmt.Errorf("medialink: public URL %q must not have a query, fragment or user", u)
	}
	return nil
}

// Lifetime is how long a new link stays valid.
func (s *Signer) Lifetime() time.Duration { return s.lifetime }

// Link returns a link to uri under name, valid for the signer's lifetime.
func (s *Signer) Link(uri id.ContentURI, name string) (string, error) {
	return s.LinkUntil(uri, name, s.now().Add(s.lifetime))
}

// LinkUntil returns a link to uri under name that works until expiry.
func (s *Signer) LinkUntil(uri id.ContentURI, name string, expiry time.Time) (string, error) {
	if !uri.IsValid() || strings.ContainsRune(uri.Homeserver, '/') || strings.ContainsRune(uri.FileID, '/') {
		return "", fmt.Errorf("medialink: not a usable content URI: %q", uri.String())
	}
	name = SafeName(name)
	until := strconv.FormatInt(expiry.Unix(), 10)
	mac := base64.RawURLEncoding.EncodeToString(s.macOf("sfb-media-link-v1", uri, until, name))
	return s.base + PathPrefix + strings.Join([]string{
		url.PathEscape(uri.Homeserver), url.PathEscape(uri.FileID), until, mac, url.PathEscape(name),
	}, "/"), nil
}

// Verify checks the decoded path segments of a link.
func (s *Signer) Verify(server, mediaID, expiry, mac, name string) (Media, error) {
	uri := id.ContentURI{Homeserver: server, FileID: mediaID}
	if err := s.check("sfb-media-link-v1", uri, expiry, mac, name); err != nil {
		return Media{}, err
	}
	return Media{URI: uri, Name: name}, nil
}

// check verifies a link of the kind label. The MAC is checked before the
// expiry, in constant time, so an expired link is told apart only when it
// is genuine.
func (s *Signer) check(label string, uri id.ContentURI, expiry, mac, name string, more ...string) error {
	got, err := linkEncoding.DecodeString(mac)
	if err != nil || !uri.IsValid() || name != SafeName(name) {
		return ErrInvalid
	}
	if !hmac.Equal(got, s.macOf(label, uri, expiry, name, more...)) {
		return ErrInvalid
	}
	until, err := strconv.ParseInt(expiry, 10, 64)
	if err != nil {
		return ErrInvalid
	}
	if !s.now().Before(time.Unix(until, 0)) {
		return ErrExpired
	}
	return nil
}

// macOf is the MAC of a link of the kind label.
func (s *Signer) macOf(label string, uri id.ContentURI, expiry, name string, more ...string) []byte {
	h := hmac.New(sha256.New, s.key)
	_, _ = h.Write(fields(label, uri, expiry, name, more...))
	return h.Sum(nil)
}

// fields writes every field with its length before it, so that no two
// different tuples give the same input (a name cannot borrow bytes of the
// media ID).
func fields(label string, uri id.ContentURI, expiry, name string, more ...string) []byte {
	var out []byte
	for _, field := range append([]string{label, uri.Homeserver, uri.FileID, expiry, name}, more...) {
		out = binary.BigEndian.AppendUint32(out, uint32(len(field)))
		out = append(out, field...)
	}
	return out
}

// SafeName reduces a sender's file name to one that is harmless in a URL
// path, a header and a download folder: no path separators, no control or
// format characters, no leading dots, at most maxNameBytes, never empty.
func SafeName(name string) string {
	var b strings.Builder
	for _, r := range name {
		// Format characters include the bidirectional overrides that
		// make "evil\u202egnp.exe" look like "evilexe.png".
		if r == '/' || r == '\\' || r == utf8.RuneError || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			r = '_'
		}
		if b.Len()+utf8.RuneLen(r) > maxNameBytes {
			break
		}
		b.WriteRune(r)
	}
	return finishName(b.String())
}

func finishName(name string) string {
	name = strings.TrimRightFunc(name, unicode.IsSpace)
	name = strings.TrimLeftFunc(name, func(r rune) bool { return r == '.' || unicode.IsSpace(r) })
	if name == "" {
		return "file"
	}
	return name
}
