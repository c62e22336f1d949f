package sip

import (
	"crypto/rand"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"fmt"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// epidOf is the endpoint ID (epid) of the bridge's endpoint for user: as
// pidgin-sipe's sipe_get_epid, the last six bytes of a SHA-1 of the user's
// URI and the machine, here the bridge instead of a host name and address,
// so that the epid (and the +sip.instance made from it) stays the same
// across restarts and on a standby bridge. The server then replaces the
// bridge's earlier registration of the user instead of adding an endpoint.
func epidOf(user sfb.URI) string {
	h := sha1.Sum([]byte(string(user) + ":sfb-matrix-bridge:"))
	return hex.EncodeToString(h[14:20])
}

// instanceNamespace is MS-SIPRE's namespace for the +sip.instance UUID
// derived from an epid (fcacfb03-8a73-46ef-91b1-e5ebeeaba4fe), in the
// byte order pidgin-sipe's generateUUIDfromEPID hashes it: the first three
// fields little-endian.
var instanceNamespace = [16]byte{0x03, 0xfb, 0xac, 0xfc, 0x73, 0x8a, 0xef, 0x46,
	0x91, 0xb1, 0xe5, 0xeb, 0xee, 0xab, 0xa4, 0xfe}

// instanceOf is the +sip.instance UUID of an epid (MS-SIPRE 3.3.5.1.1; a
// name-based version-5 UUID whose first three fields are read
// little-endian, as Microsoft's clients do).
func instanceOf(epid string) string {
	h := sha1.New()
	h.Write(instanceNamespace[:])
	h.Write([]byte(epid))
	d := h.Sum(nil)
	timeLow := binary.LittleEndian.Uint32(d[0:4])
	timeMid := binary.LittleEndian.Uint16(d[4:6])
	timeHi := binary.LittleEndian.Uint16(d[6:8])&0x0fff | 0x5000
	return fmt.Sprintf("%08x-%04x-%04x-%02x%02x-%x", timeLow, timeMid, timeHi, d[8]&0x3f|0x80, d[9], d[10:16])
}

// newTag is a From/To tag; newCallID a Call-ID; newBranch is not needed:
// sipconn adds Via with its branch.
func newTag() string { return randomHex(5) }

func newCallID() string { return randomHex(16) }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b)
}
