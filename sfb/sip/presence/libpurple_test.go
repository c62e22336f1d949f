package presence

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pidgin-sipe reads multipart bodies with libpurple's MIME parser, which
// takes what follows the last '=' of the Content-Type as the boundary: the
// boundary must come last, unquoted, as in MS-SIP's example. With it first
// (mime.FormatMediaType sorts the parameters) pidgin-sipe found no part and
// showed no presence at all. It also ends a part's content two bytes before
// the CRLF that precedes the delimiter, so each part ends with a blank line.
func TestMultipartBoundaryLastForLibpurple(t *testing.T) {
	for _, n := range []Notify{
		{List: &List{URI: "sip:alice@contoso.com", Version: 1, FullState: true, Resources: []ListResource{{URI: "sip:bob@contoso.com", State: "active", CID: "bob@contoso.com"}}},
			Documents: []Categories{{URI: "sip:bob@contoso.com"}}},
		{Documents: []Categories{{URI: "sip:bob@contoso.com"}, {URI: "sip:carol@contoso.com"}}},
	} {
		ct, body := n.Marshal()
		require.True(t, strings.HasPrefix(ct, "multipart/related; type="), ct)
		boundary := ct[strings.LastIndexByte(ct, '=')+1:]
		assert.True(t, strings.HasPrefix(string(body), "--"+boundary+"\r\n"), "the boundary libpurple reads (%q) opens the body", boundary)
		assert.Contains(t, string(body), "\r\n--"+boundary+"--")
		parts := strings.Split(string(body), "--"+boundary)
		require.Len(t, parts, 2+len(n.Documents)+map[bool]int{true: 1}[n.List != nil])
		for _, p := range parts[1 : len(parts)-1] {
			_, content, ok := strings.Cut(p, "\r\n\r\n")
			require.True(t, ok, p)
			// What libpurple hands pidgin-sipe: the content less 4 bytes.
			xml := content[:len(content)-4]
			assert.True(t, strings.HasSuffix(xml, ">"), "libpurple would read %q", xml)
		}
		back, err := ParseNotify(ct, body)
		require.NoError(t, err)
		assert.Len(t, back.Documents, len(n.Documents))
	}
}
