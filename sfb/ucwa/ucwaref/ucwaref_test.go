package ucwaref

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// loadCorpus loads the reference, or skips (fails in CI) without it.
func loadCorpus(t *testing.T) *Corpus {
	t.Helper()
	return ForTest(t)
}

func loadString(t *testing.T, md string) *Corpus {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "page.md"), []byte(md), 0o600))
	c, err := Load(dir)
	require.NoError(t, err)
	return c
}

func TestRepairs(t *testing.T) {
	tests := []struct {
		name    string
		block   string
		check   func(t *testing.T, c *Corpus, b *Body)
		failing bool
	}{
		{
			name:  "entities and sip blanks",
			block: "POST https://x/y HTTP/1.1\nContent-Type: application/json\n{\n  &quot;to&quot; : &quot;sip : john@contoso.com&quot;\n}",
			check: func(t *testing.T, c *Corpus, b *Body) {
				assert.Equal(t, "sip:john@contoso.com", b.JSON.(map[string]any)["to"])
				assert.Equal(t, 1, c.Quirks.Entities)
				assert.Equal(t, 1, c.Quirks.URIBlanks)
			},
		},
		{
			name:  "elided lines and dangling comma",
			block: "HTTP/1.1 200 OK\nContent-Type: application/json\n\n{\n\"a\":1,\n.\n.\n.\n}",
			check: func(t *testing.T, c *Corpus, b *Body) {
				assert.True(t, b.Elided)
				assert.EqualValues(t, "1", b.JSON.(map[string]any)["a"].(interface{ String() string }).String())
				assert.Equal(t, 3, c.Quirks.ElidedLines)
				assert.Equal(t, 1, c.Quirks.DanglingCommas)
			},
		},
		{
			name:  "stray quote",
			block: "{\n\"href\":\"/c/21a1\"'\n\"events\": []\n}",
			check: func(t *testing.T, c *Corpus, b *Body) {
				assert.Equal(t, "/c/21a1", b.JSON.(map[string]any)["href"])
				assert.Equal(t, 1, c.Quirks.StrayQuotes)
			},
		},
		{
			name:  "missing brace before href",
			block: "{\n\"_links\":{\n\"onlineMeetingDefaultValues\": \"href\":\"/d\"},\n\"self\":{\"href\":\"/s\"}\n}\n}",
			check: func(t *testing.T, c *Corpus, b *Body) {
				links := b.JSON.(map[string]any)["_links"].(map[string]any)
				assert.Equal(t, "/d", links["onlineMeetingDefaultValues"].(map[string]any)["href"])
				assert.Equal(t, 1, c.Quirks.MissingBraces)
			},
		},
		{
			name:  "missing colon and key quote",
			block: "{\n\"self\"{\"href\":\"/s\"},\ntype\":\"added\"\n}",
			check: func(t *testing.T, c *Corpus, b *Body) {
				m := b.JSON.(map[string]any)
				assert.Equal(t, "added", m["type"])
				assert.Equal(t, "/s", m["self"].(map[string]any)["href"])
			},
		},
		{
			name:  "string broken across lines",
			block: "{\n\"href\" : \"data : text/plain;base64,\n      aGk=\"\n}",
			check: func(t *testing.T, c *Corpus, b *Body) {
				assert.Equal(t, "data:text/plain;base64,aGk=", b.JSON.(map[string]any)["href"])
				assert.Equal(t, 1, c.Quirks.BrokenStrings)
			},
		},
		{
			name:  "elided object value and missing status line",
			block: "Content-Type: application/json\n\n{\n\"people\":{...},\n\"rel\":\"application\"\n}",
			check: func(t *testing.T, c *Corpus, b *Body) {
				assert.Equal(t, "application", b.JSON.(map[string]any)["rel"])
				assert.Equal(t, 1, c.Quirks.ElidedValues)
				assert.Equal(t, 1, c.Quirks.MissingStatusLine)
			},
		},
		{
			name:    "unrepairable",
			block:   "HTTP/1.1 200 OK\nContent-Type: application/json\n\n{\n\"a\": [1,, 2]\n}",
			failing: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := loadString(t, "# x\n\n```\n"+tt.block+"\n```\n")
			require.Len(t, c.Transcripts, 1)
			bodies := c.Transcripts[0].Bodies()
			require.Len(t, bodies, 1)
			b := bodies[0]
			if tt.failing {
				require.Error(t, b.Err)
				require.Len(t, c.Failures, 1)
				assert.Equal(t, "page.md", c.Failures[0].File)
				assert.Equal(t, 4, c.Failures[0].Line)
				return
			}
			require.NoError(t, b.Err, b.Raw)
			assert.NotEmpty(t, b.Repaired)
			assert.Empty(t, c.Failures)
			tt.check(t, c, b)
		})
	}
}

func TestRequestAndResponseParsing(t *testing.T) {
	md := "text\n\n  ```\n  POST https://h/webticket/oauthtoken HTTP/1.1\n  Content-Type: application/x-www-form-urlencoded\n  .\n  .\n  grant_type=password&amp;username=a&amp;password=b\n  ```\n\n" +
		"```\nHTTP/1.1 401 Unauthorized\nWWW-Authenticate: Bearer x\nWWW-Authenticate: MsRtcOAuth href=\"https://h/WebTicket/oauthtoken\",grant_type=\"password\"\n```\n" +
		"```\nvar x = 1;\n```\n" +
		"```\n{\n url: \"x\", // comment\n}\n```\n"
	c := loadString(t, md)
	require.Len(t, c.Transcripts, 2)
	req := c.Transcripts[0].Request
	require.NotNil(t, req)
	assert.Equal(t, "POST", req.Method)
	assert.Equal(t, "https://h/webticket/oauthtoken", req.URL)
	assert.Equal(t, "grant_type=password&username=a&password=b", req.Body.Raw)
	assert.Equal(t, 2, c.Quirks.ElidedLines)
	resp := c.Transcripts[1].Response
	require.NotNil(t, resp)
	assert.Equal(t, 401, resp.Status)
	assert.Len(t, resp.Header.Values("Www-Authenticate"), 2)
	require.Len(t, c.Code, 1)
	assert.Contains(t, c.Code[0].Reason, "JavaScript")
}

func TestResourcesFindsEmbeddedAndSkipsLinks(t *testing.T) {
	body := `{
"_links":{"self":{"href":"/e?ack=1"},"next":{"href":"/e?ack=2"}},
"sender":[{"rel":"communication","href":"/c","events":[
 {"link":{"rel":"messagingInvitation","href":"/i/1"},"_embedded":{"messagingInvitation":{"direction":"Incoming","rel":"messagingInvitation","_embedded":{"from":{"rel":"participant","uri":"sip:a@b"}}}},"type":"started"},
 {"link":{"rel":"conversation","href":"/conv"},"type":"added"}
]}]}`
	c := loadString(t, "```\nHTTP/1.1 200 OK\nContent-Type: application/json\n\n"+body+"\n```\n")
	inv := c.Resources("messagingInvitation")
	require.Len(t, inv, 1)
	assert.Equal(t, "sender[0].events[0]._embedded.messagingInvitation", inv[0].Path)
	assert.Equal(t, "started", inv[0].Event["type"])
	assert.Len(t, c.Resources("participant"), 1)
	assert.Empty(t, c.Resources("conversation"), "links are not resources")
	assert.Empty(t, c.Resources("communication"), "sender entries are not resources")
	assert.Len(t, c.Resources(EventsRel), 1)
}

// TestReferenceCorpus holds the extractor against Microsoft's pages: a
// broken extractor finds far fewer transcripts.
func TestReferenceCorpus(t *testing.T) {
	c := loadCorpus(t)
	t.Logf("files=%d blocks=%d transcripts=%d", c.Files, c.Blocks, len(c.Transcripts))
	t.Logf("quirks: %v", c.Quirks.Map())
	for _, f := range c.Failures {
		t.Logf("not JSON: %s", f)
	}
	for _, f := range c.Code {
		t.Logf("code, not a transcript: %s", f)
	}
	assert.GreaterOrEqual(t, c.Files, 370)
	assert.GreaterOrEqual(t, len(c.Transcripts), 1000)
	assert.LessOrEqual(t, len(c.Failures), 10, "more unparseable bodies than known")
	q := c.Quirks
	assert.Positive(t, q.Entities)
	assert.Positive(t, q.URIBlanks)
	assert.Positive(t, q.ElidedLines)
	assert.Positive(t, q.StrayQuotes)
	assert.Positive(t, q.MissingBraces)
	assert.GreaterOrEqual(t, q.Unfenced, 50)
	var typing int
	for _, e := range c.Events() {
		if in, ok := e.Event["in"].(map[string]any); ok && in["rel"] == "typingParticipants" {
			typing++
		}
	}
	assert.GreaterOrEqual(t, typing, 2, "typingParticipants added/deleted samples")
	rels := c.Rels()
	for rel, min := range map[string]int{
		"application": 5, "me": 5, "communication": 5, "conversation": 5, "messaging": 4,
		"messagingInvitation": 5, "message": 3, "participant": 10, "contact": 10, EventsRel: 40,
	} {
		assert.GreaterOrEqual(t, rels[rel], min, "resources with rel %s", rel)
	}
	// ReceiveAnIM.md's incoming invitation carries the first message.
	var found bool
	for _, r := range c.Resources("messagingInvitation") {
		if r.File == "ReceiveAnIM.md" && r.Object["direction"] == "Incoming" {
			links := r.Object["_links"].(map[string]any)
			if m, ok := links["message"].(map[string]any); ok {
				assert.Equal(t, "data:text/plain;charset=utf-8,Hi+Tosh%0d%0a", m["href"])
				found = true
			}
		}
	}
	assert.True(t, found, "incoming invitation with message in ReceiveAnIM.md")
}

func TestUnfencedSample(t *testing.T) {
	md := "Sample of returned event data.\n{\n  \"_links\" : {\"next\" : {\"href\" : \"/a/events?ack=2\"}},\n  \"sender\" : []\n}\n\n## Operations\n"
	c := loadString(t, md)
	require.Len(t, c.Transcripts, 1)
	assert.Equal(t, 1, c.Quirks.Unfenced)
	assert.Len(t, c.Resources(EventsRel), 1)
}
