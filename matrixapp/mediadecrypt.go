package matrixapp

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"

	"maunium.net/go/mautrix/crypto/attachment"
)

// errHashMismatch is a file whose ciphertext is not what the sender
// encrypted: changed on the homeserver or in transit.
var errHashMismatch = errors.New("the encrypted file does not match the hash in its event")

// decryptedMedia is the plaintext of an encrypted file, read from its
// checked ciphertext.
type decryptedMedia struct {
	io.Reader
	size int64
	file *os.File
}

// Close removes the ciphertext's temporary file.
func (d *decryptedMedia) Close() error {
	err := d.file.Close()
	return errors.Join(err, os.Remove(d.file.Name()))
}

// decryptMedia reads the ciphertext of an encrypted file to its end,
// checks its SHA-256 against the event's before a single byte is served
// (AES-CTR has no integrity of its own: served on the fly, a changed file
// would reach the SfB user before the hash could tell), and returns a
// reader of the plaintext.
//
// The ciphertext waits in a temporary file rather than in memory, so that
// a large file costs disk rather than the bridge's memory; only ciphertext
// is ever written there, and the file is removed on Close.
func decryptMedia(ciphertext io.Reader, file *attachment.EncryptedFile) (*decryptedMedia, error) {
	if err := file.PrepareForDecryption(); err != nil {
		return nil, fmt.Errorf("prepare decryption: %w", err)
	}
	want, err := base64.RawStdEncoding.DecodeString(file.Hashes.SHA256)
	if err != nil {
		return nil, fmt.Errorf("decode hash: %w", err)
	}
	tmp, err := os.CreateTemp("", "sfb-media-*")
	if err != nil {
		return nil, fmt.Errorf("temporary file for the ciphertext: %w", err)
	}
	d := &decryptedMedia{file: tmp}
	hash := sha256.New()
	d.size, err = io.Copy(io.MultiWriter(tmp, hash), ciphertext)
	if err != nil {
		_ = d.Close()
		return nil, fmt.Errorf("download ciphertext: %w", err)
	}
	if !hmac.Equal(hash.Sum(nil), want) {
		_ = d.Close()
		return nil, errHashMismatch
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		_ = d.Close()
		return nil, fmt.Errorf("rewind ciphertext: %w", err)
	}
	d.Reader = file.DecryptStream(tmp)
	return d, nil
}
