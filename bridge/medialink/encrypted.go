package medialink

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"mime"
	"net/url"
	"strconv"
	"strings"
	"time"

	"maunium.net/go/mautrix/crypto/attachment"
	"maunium.net/go/mautrix/id"
)

// Files from encrypted rooms.
//
// In an encrypted room the homeserver holds only ciphertext; the key, the
// IV and the hash of the ciphertext travel in the (encrypted) event. The
// listener needs them to serve the file, so the link carries them,
// sealed:
//
//	<public URL>/sfb/media/v1/e/<server>/<media ID>/<expiry>/<MAC>/<sealed>/<file name>
//
// where <sealed> is AES-256-GCM, under a key derived from the link key,
// of the file key, IV, SHA-256 of the ciphertext and media type, with the
// server, media ID, expiry and name as additional data.
//
// Why in the link and not in the database: a link is already the
// credential for its one file, and whoever holds it gets the plaintext
// anyway, so putting the key in it grants nothing more; it keeps the
// links stateless like the others (no table that grows with every file,
// nothing to expire or clean up, nothing a standby process must find),
// and a rotated link key revokes both kinds at once. Why sealed and not
// in clear: SfB keeps message text in archives, logs and compliance
// exports long after the link expired, while the ciphertext stays
// downloadable to any account of the homeserver; a key in clear there
// would decrypt the file forever. Sealed, it is useless to anyone without
// the bridge's link key, and an expired link stays expired.
const (
	// encryptedSegment marks the links of encrypted files after PathPrefix.
	encryptedSegment = "e/"
	// maxMediaTypeBytes bounds the media type kept in a sealed link.
	maxMediaTypeBytes = 100
	fileKeySize       = 32
	fileIVSize        = 16
	fileHashSize      = sha256.Size
)

// EncryptedRoute is the pattern of an encrypted file's link on an
// http.ServeMux.
const EncryptedRoute = "GET " + PathPrefix + encryptedSegment + "{server}/{mediaID}/{expiry}/{mac}/{sealed}/{name}"

// LinkEncrypted returns a link to the encrypted file at uri under name,
// valid for the signer's lifetime; mediaType is what the sender said the
// file is (the homeserver only knows it as octets).
func (s *Signer) LinkEncrypted(uri id.ContentURI, name, mediaType string, file *attachment.EncryptedFile) (string, error) {
	return s.LinkEncryptedUntil(uri, name, mediaType, file, s.now().Add(s.lifetime))
}

// LinkEncryptedUntil is LinkEncrypted with the expiry given.
func (s *Signer) LinkEncryptedUntil(uri id.ContentURI, name, mediaType string, file *attachment.EncryptedFile, expiry time.Time) (string, error) {
	if !uri.IsValid() || strings.ContainsRune(uri.Homeserver, '/') || strings.ContainsRune(uri.FileID, '/') {
		return "", fmt.Errorf("medialink: not a usable content URI: %q", uri.String())
	}
	plain, err := fileSecrets(file)
	if err != nil {
		return "", err
	}
	plain = append(plain, cleanMediaType(mediaType)...)
	name = SafeName(name)
	until := strconv.FormatInt(expiry.Unix(), 10)
	nonce := make([]byte, s.seal.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("medialink: nonce: %w", err)
	}
	sealed := base64.RawURLEncoding.EncodeToString(s.seal.Seal(nonce, nonce, plain, fields("sfb-media-seal-v1", uri, until, name)))
	mac := base64.RawURLEncoding.EncodeToString(s.macOf("sfb-media-link-v1-e", uri, until, name, sealed))
	return s.base + PathPrefix + encryptedSegment + strings.Join([]string{
		url.PathEscape(uri.Homeserver), url.PathEscape(uri.FileID), until, mac, sealed, url.PathEscape(name),
	}, "/"), nil
}

// VerifyEncrypted checks the decoded path segments of an encrypted file's
// link and opens its seal. Like Verify, it tells an expired link apart
// only when it is genuine.
func (s *Signer) VerifyEncrypted(server, mediaID, expiry, mac, sealed, name string) (Media, error) {
	uri := id.ContentURI{Homeserver: server, FileID: mediaID}
	if err := s.check("sfb-media-link-v1-e", uri, expiry, mac, name, sealed); err != nil {
		return Media{}, err
	}
	box, err := linkEncoding.DecodeString(sealed)
	if err != nil || len(box) < s.seal.NonceSize() {
		return Media{}, ErrInvalid
	}
	plain, err := s.seal.Open(nil, box[:s.seal.NonceSize()], box[s.seal.NonceSize():], fields("sfb-media-seal-v1", uri, expiry, name))
	if err != nil || len(plain) < fileKeySize+fileIVSize+fileHashSize {
		return Media{}, ErrInvalid
	}
	return Media{
		URI:       uri,
		Name:      name,
		MediaType: string(plain[fileKeySize+fileIVSize+fileHashSize:]),
		File:      encryptedFile(plain),
	}, nil
}

// fileSecrets is the key, IV and hash of file, decoded and checked.
func fileSecrets(file *attachment.EncryptedFile) ([]byte, error) {
	if file == nil {
		return nil, fmt.Errorf("medialink: no encrypted file")
	}
	if file.Version != "v2" || file.Key.Algorithm != "A256CTR" {
		return nil, fmt.Errorf("medialink: encrypted file of version %q, algorithm %q: want v2, A256CTR", file.Version, file.Key.Algorithm)
	}
	key, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(file.Key.Key, "="))
	if err != nil || len(key) != fileKeySize {
		return nil, fmt.Errorf("medialink: encrypted file key is not %d bytes of base64url", fileKeySize)
	}
	iv, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(file.InitVector, "="))
	if err != nil || len(iv) != fileIVSize {
		return nil, fmt.Errorf("medialink: encrypted file IV is not %d bytes of base64", fileIVSize)
	}
	hash, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(file.Hashes.SHA256, "="))
	if err != nil || len(hash) != fileHashSize {
		return nil, fmt.Errorf("medialink: encrypted file has no SHA-256 hash")
	}
	out := make([]byte, 0, fileKeySize+fileIVSize+fileHashSize+maxMediaTypeBytes)
	return append(append(append(out, key...), iv...), hash...), nil
}

// encryptedFile rebuilds the event's description of the file from what
// fileSecrets kept.
func encryptedFile(plain []byte) *attachment.EncryptedFile {
	return &attachment.EncryptedFile{
		Key: attachment.JSONWebKey{
			Key:         base64.RawURLEncoding.EncodeToString(plain[:fileKeySize]),
			Algorithm:   "A256CTR",
			Extractable: true,
			KeyType:     "oct",
			KeyOps:      []string{"encrypt", "decrypt"},
		},
		InitVector: base64.RawStdEncoding.EncodeToString(plain[fileKeySize : fileKeySize+fileIVSize]),
		Hashes:     attachment.EncryptedFileHashes{SHA256: base64.RawStdEncoding.EncodeToString(plain[fileKeySize+fileIVSize : fileKeySize+fileIVSize+fileHashSize])},
		Version:    "v2",
	}
}

// cleanMediaType is the sender's media type without parameters, or empty
// when it is not one.
func cleanMediaType(mediaType string) string {
	parsed, _, err := mime.ParseMediaType(mediaType)
	if err != nil || len(parsed) > maxMediaTypeBytes {
		return ""
	}
	return parsed
}

// newSeal is the AEAD of sealed links, under a key of its own derived from
// the link key, so that the MAC key and the sealing key are never the
// same.
func newSeal(linkKey []byte) (cipher.AEAD, error) {
	h := hmac.New(sha256.New, linkKey)
	_, _ = h.Write([]byte("sfb-media-link-v1 seal key"))
	block, err := aes.NewCipher(h.Sum(nil))
	if err != nil {
		return nil, fmt.Errorf("medialink: seal: %w", err)
	}
	return cipher.NewGCM(block)
}
