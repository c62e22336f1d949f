package ntlm

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/rc4"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"strings"

	//lint:ignore SA1019 NTLM is defined over MD4 (MS-NLMP 3.3.1): compatibility with SfB is the point.
	"golang.org/x/crypto/md4"
)

// NTOWFv1 is MD4 of the UTF-16 password (MS-NLMP 3.3.1), the "NT hash".
func NTOWFv1(password string) []byte {
	h := md4.New()
	h.Write(encodeUTF16(password))
	return h.Sum(nil)
}

// ntowfv2 is NTOWFv2, the NTLMv2 response key (MS-NLMP 3.3.2): HMAC-MD5 keyed with
// the NT hash over the upper-cased user name and the domain as given.
func ntowfv2(ntHash []byte, user, domain string) []byte {
	return hmacMD5(ntHash, encodeUTF16(strings.ToUpper(user)+domain))
}

func hmacMD5(key []byte, data ...[]byte) []byte {
	h := hmac.New(md5.New, key)
	for _, d := range data {
		h.Write(d)
	}
	return h.Sum(nil)
}

func rc4Crypt(key, data []byte) []byte {
	c, err := rc4.NewCipher(key)
	if err != nil {
		panic(err) // only for keys of 0 or more than 256 bytes; ours are 16
	}
	out := make([]byte, len(data))
	c.XORKeyStream(out, data)
	return out
}

// v2Responses computes the NTLMv2 responses (MS-NLMP 3.3.2). temp is the
// NTLMv2_CLIENT_CHALLENGE structure without the NTProofStr. It returns the
// LM and NT challenge responses and the session base key.
func v2Responses(responseKey []byte, serverChallenge, clientChallenge [8]byte, temp []byte) (lm, nt, sessionBaseKey []byte) {
	proof := hmacMD5(responseKey, serverChallenge[:], temp)
	nt = append(proof, temp...)
	lm = append(hmacMD5(responseKey, serverChallenge[:], clientChallenge[:]), clientChallenge[:]...)
	return lm, nt, hmacMD5(responseKey, proof)
}

// clientChallengeBlob builds temp, the NTLMv2_CLIENT_CHALLENGE (MS-NLMP
// 2.2.2.7) followed by four zero bytes as MS-NLMP 3.3.2 computes it.
func clientChallengeBlob(timestamp uint64, clientChallenge [8]byte, targetInfo []byte) []byte {
	b := []byte{1, 1, 0, 0, 0, 0, 0, 0}
	b = binary.LittleEndian.AppendUint64(b, timestamp)
	b = append(b, clientChallenge[:]...)
	b = append(b, 0, 0, 0, 0)
	b = append(b, targetInfo...)
	return append(b, 0, 0, 0, 0)
}

var (
	clientSigning = []byte("session key to client-to-server signing key magic constant\x00")
	serverSigning = []byte("session key to server-to-client signing key magic constant\x00")
	clientSealing = []byte("session key to client-to-server sealing key magic constant\x00")
	serverSealing = []byte("session key to server-to-client sealing key magic constant\x00")
)

// signKey is SIGNKEY (MS-NLMP 3.4.5.2) with extended session security.
func signKey(exportedSessionKey []byte, client bool) []byte {
	magic := serverSigning
	if client {
		magic = clientSigning
	}
	h := md5.Sum(append(append([]byte{}, exportedSessionKey...), magic...))
	return h[:]
}

// sealKey is SEALKEY (MS-NLMP 3.4.5.3) with extended session security and
// NTLMSSP_NEGOTIATE_128 (the only strength this package negotiates).
func sealKey(exportedSessionKey []byte, client bool) []byte {
	magic := serverSealing
	if client {
		magic = clientSealing
	}
	h := md5.Sum(append(append([]byte{}, exportedSessionKey...), magic...))
	return h[:]
}

// sessionKeys are the four keys of an established NTLM session (MS-NLMP 3.4.5).
type sessionKeys struct {
	ClientSigning, ClientSealing []byte
	ServerSigning, ServerSealing []byte
}

// deriveKeys derives the signing and sealing keys from the exported session
// key, for NTLMv2 with extended session security and 128-bit keys.
func deriveKeys(exportedSessionKey []byte) sessionKeys {
	return sessionKeys{
		ClientSigning: signKey(exportedSessionKey, true),
		ClientSealing: sealKey(exportedSessionKey, true),
		ServerSigning: signKey(exportedSessionKey, false),
		ServerSealing: sealKey(exportedSessionKey, false),
	}
}

// SignatureSize is the size of an NTLMSSP_MESSAGE_SIGNATURE.
const SignatureSize = 16

// mac computes the NTLMSSP_MESSAGE_SIGNATURE of message (MS-NLMP 3.4.4.2,
// extended session security, key exchange negotiated) in connection-less
// mode: the RC4 handle is not kept between messages but keyed for each one
// with MD5(SealingKey, SeqNum) (MS-NLMP 3.4.4, "If the connection-less mode
// is used"; pidgin-sipe's sip-sec-ntlm.c MAC() does the same for SIP).
func mac(signingKey, sealingKey []byte, seqNum uint32, message []byte) [SignatureSize]byte {
	var seq [4]byte
	binary.LittleEndian.PutUint32(seq[:], seqNum)
	checksum := hmacMD5(signingKey, seq[:], message)[:8]
	handle := md5.Sum(append(append([]byte{}, sealingKey...), seq[:]...))
	var sig [SignatureSize]byte
	sig[0] = 1 // Version
	copy(sig[4:12], rc4Crypt(handle[:], checksum))
	copy(sig[12:], seq[:])
	return sig
}

// macConnectionOriented is mac in connection-oriented mode, where the RC4 handle is the one
// keyed once with the sealing key and kept across messages; it serves
// MS-NLMP's GSS_WrapEx test vector (4.2.4.4), the only published one for a
// signature with extended session security and key exchange.
func macConnectionOriented(signingKey []byte, handle *rc4.Cipher, seqNum uint32, message []byte) [SignatureSize]byte {
	var seq [4]byte
	binary.LittleEndian.PutUint32(seq[:], seqNum)
	checksum := hmacMD5(signingKey, seq[:], message)[:8]
	var sig [SignatureSize]byte
	sig[0] = 1
	handle.XORKeyStream(sig[4:12], checksum)
	copy(sig[12:], seq[:])
	return sig
}

// ErrBadSignature is returned when a message signature does not verify.
var ErrBadSignature = errors.New("ntlm: message signature does not match")

// verifyMAC checks sig against the mac of message, in constant time.
func verifyMAC(signingKey, sealingKey []byte, seqNum uint32, message, sig []byte) error {
	want := mac(signingKey, sealingKey, seqNum, message)
	if subtle.ConstantTimeCompare(want[:], sig) != 1 {
		return ErrBadSignature
	}
	return nil
}
