package bridge

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// noticeTags are the only elements a meeting notice may contain.
var noticeTags = map[string]bool{"p": true, "strong": true, "del": true, "br": true, "a": true, "code": true}

// FuzzMeetingNotice renders meetings with whatever SfB may send and holds
// the notice to its promises: only the notice's own markup, at most one
// link, and that one https to a meeting domain.
func FuzzMeetingNotice(f *testing.F) {
	f.Add("Team sync", "https://meet.contoso.com/bob/K2W8Z1QH", "Bob", "Germany", "+49 611 1", "4711", false)
	f.Add(`<img src=x onerror=alert(1)>`, "javascript:alert(1)", `"><script>`, "<b>", "&amp;", "<", true)
	f.Add("", "https://meet.contoso.com@evil.example/", "", "", "", "", false)
	f.Add("x", `https://meet.contoso.com/a"onmouseover="alert(1)`, "y", "", "", "", false)
	r := meetingRenderer{zone: time.UTC, domains: []string{"contoso.com"}}
	f.Fuzz(func(t *testing.T, subject, joinURL, organizer, region, number, confID string, cancelled bool) {
		m := sfb.Meeting{
			URI: "sip:bob@contoso.com;gruu;opaque=app:conf:focus:id:X", JoinURL: joinURL, Subject: subject,
			Organizer: sfb.Person{URI: "sip:bob@contoso.com", DisplayName: organizer}, ConferenceID: confID,
			DialIn: []sfb.DialInNumber{{Region: region, Number: number}},
		}
		content, extra := r.meeting(m, cancelled, false)
		links := 0
		z := html.NewTokenizer(strings.NewReader(content.FormattedBody))
		for {
			tt := z.Next()
			if tt == html.ErrorToken {
				break
			}
			if tt != html.StartTagToken && tt != html.EndTagToken && tt != html.SelfClosingTagToken {
				continue
			}
			tok := z.Token()
			if !noticeTags[tok.Data] {
				t.Fatalf("element <%s> in notice: %s", tok.Data, content.FormattedBody)
			}
			if tt == html.EndTagToken {
				continue
			}
			for _, a := range tok.Attr {
				if tok.Data != "a" || a.Key != "href" {
					t.Fatalf("attribute %s on <%s>: %s", a.Key, tok.Data, content.FormattedBody)
				}
				links++
				u, err := url.Parse(a.Val)
				if err != nil || u.Scheme != "https" || u.User != nil ||
					(u.Hostname() != "contoso.com" && !strings.HasSuffix(u.Hostname(), ".contoso.com")) {
					t.Fatalf("unsafe link %q in notice", a.Val)
				}
			}
		}
		if links > 1 || (cancelled && links > 0) {
			t.Fatalf("%d links in notice (cancelled %t): %s", links, cancelled, content.FormattedBody)
		}
		field := extra[MeetingField].(map[string]any)
		if _, ok := field["join_url"]; ok != (links == 1) {
			t.Fatalf("join_url in the field (%t) but %d links in the notice", ok, links)
		}
	})
}
