package ucwa

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// batchBody is a batch response in BatchingRequests.md's form with a good
// part, a part that is no HTTP response and a 404.
const batchBody = "--b1\r\nContent-Type: application/http; msgtype=response\r\n\r\n" +
	"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n\r\n" +
	`{"rel":"contactPresence","availability":"Busy","activity":"on-the-phone","deviceType":"DeskPhone","lastActive":"\/Date(1474932023993)\/","_links":{"self":{"href":"/p/presence"}}}` +
	"\r\n--b1\r\nContent-Type: application/http; msgtype=response\r\n\r\n" +
	"this is not a response\r\n" +
	"\r\n--b1\r\nContent-Type: application/http; msgtype=response\r\n\r\n" +
	"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n\r\n" + `{"code":"NotFound"}` +
	"\r\n--b1--\r\n"

func TestDecodeBatchKeepsTheGoodPartsOfABrokenOne(t *testing.T) {
	parts, err := decodeBatch(`multipart/batching; boundary="b1"`, []byte(batchBody))
	require.NoError(t, err)
	require.Len(t, parts, 3)
	require.NoError(t, parts[0].err)
	assert.Equal(t, 200, parts[0].status)
	p, err := applyPresenceBody(sfb.Presence{}, "contactPresence", parts[0].body)
	require.NoError(t, err)
	assert.Equal(t, sfb.AvailabilityBusy, p.Availability)
	assert.Equal(t, sfb.ActivityOnThePhone, p.Activity)
	assert.Equal(t, sfb.DeviceDeskPhone, p.Device)
	assert.Equal(t, int64(1474932023993), p.LastActive.UnixMilli())
	assert.Error(t, parts[1].err)
	assert.Equal(t, 404, parts[2].status)

	_, err = decodeBatch("application/json", []byte(batchBody))
	assert.Error(t, err, "not a multipart answer")
}

func TestEncodeBatchIsWhatTheReferenceShows(t *testing.T) {
	body, ct, err := encodeBatch([]string{"https://fe1.contoso.com/ucwa/oauth/v1/applications/1/people/a@contoso.com/presence?x=1"})
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(ct, "multipart/batching; boundary="))
	assert.Contains(t, string(body), "Content-Type: application/http; msgtype=request\r\n\r\nGET /ucwa/oauth/v1/applications/1/people/a@contoso.com/presence?x=1 HTTP/1.1\r\nHost: fe1.contoso.com\r\n")
}

func TestApplyPresenceBodyMapsBadValuesToSafeDefaults(t *testing.T) {
	oof := &sfb.OutOfOffice{Message: "Away until 3 Dec"}
	for _, tc := range []struct {
		name, rel, body string
		want            sfb.Presence
		warnings        int
		fails           bool
	}{
		{"known values", "contactPresence", `{"availability":"idleBusy","activity":"in-a-meeting","deviceType":"Mobile"}`,
			sfb.Presence{Availability: sfb.AvailabilityIdleBusy, Activity: sfb.ActivityInAMeeting, Device: sfb.DeviceMobile, Note: "kept"}, 0, false},
		{"unknown availability", "contactPresence", `{"availability":"Lurking"}`, sfb.Presence{Note: "kept"}, 1, false},
		{"unknown device", "contactPresence", `{"availability":"Away","deviceType":"Toaster"}`, sfb.Presence{Availability: sfb.AvailabilityAway, Note: "kept"}, 0, false},
		{"activity with control characters", "contactPresence", `{"availability":"Busy","activity":"in a\u0007 call"}`,
			sfb.Presence{Availability: sfb.AvailabilityBusy, Activity: "in a call", Note: "kept"}, 1, false},
		{"personal note", "contactNote", `{"message":" Heads down ","type":"Personal"}`, sfb.Presence{Availability: sfb.AvailabilityOnline, Note: "Heads down"}, 0, false},
		{"out of office", "contactNote", `{"message":"Away until 3 Dec","type":"OutOfOffice"}`, sfb.Presence{Availability: sfb.AvailabilityOnline, OutOfOffice: oof}, 0, false},
		{"unknown note type", "contactNote", `{"message":"hi","type":"Shouting"}`, sfb.Presence{Availability: sfb.AvailabilityOnline, Note: "hi"}, 1, false},
		{"note cleared", "contactNote", `{}`, sfb.Presence{Availability: sfb.AvailabilityOnline}, 0, false},
		{"oversized note", "contactNote", `{"message":"` + strings.Repeat("x", 3*maxNoteRunes) + `","type":"Personal"}`,
			sfb.Presence{Availability: sfb.AvailabilityOnline, Note: strings.Repeat("x", maxNoteRunes)}, 1, false},
		{"malformed", "contactPresence", `{"availability":`, sfb.Presence{}, 0, true},
		{"availability not a string", "contactPresence", `{"availability":7}`, sfb.Presence{}, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cur := sfb.Presence{Availability: sfb.AvailabilityOnline, Note: "kept"}
			got, err := applyPresenceBody(cur, tc.rel, []byte(tc.body))
			if tc.fails {
				assert.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got.Presence)
			assert.Len(t, got.warnings, tc.warnings, "%v", got.warnings)
		})
	}
}

// FuzzPresenceBatch decodes batch responses and the presence bodies in
// them: never a panic, and whatever comes in, what goes out is a known
// availability (or unknown) and notes that are valid, bounded text.
func FuzzPresenceBatch(f *testing.F) {
	f.Add(`multipart/batching; boundary="b1"`, []byte(batchBody))
	f.Add(`multipart/batching; boundary=x`, []byte("--x\r\n\r\nHTTP/1.1 200 OK\r\n\r\n{\"message\":\"\xff\",\"type\":\"OutOfOffice\"}\r\n--x--"))
	f.Add("multipart/batching", []byte("--"))
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		parts, _ := decodeBatch(contentType, body)
		bodies := [][]byte{body}
		for _, p := range parts {
			bodies = append(bodies, p.body)
		}
		for _, b := range bodies {
			for _, rel := range []string{"contactPresence", "contactNote"} {
				p, err := applyPresenceBody(sfb.Presence{}, rel, b)
				if err != nil {
					continue
				}
				if p.Availability != sfb.AvailabilityUnknown && availabilityOf(string(p.Availability)) != p.Availability {
					t.Fatalf("availability %q", p.Availability)
				}
				for _, s := range []string{p.Activity, p.Note} {
					if !utf8.ValidString(s) || utf8.RuneCountInString(s) > maxNoteRunes {
						t.Fatalf("text %q", s)
					}
				}
				if p.OutOfOffice != nil && (p.OutOfOffice.Message == "" || !utf8.ValidString(p.OutOfOffice.Message)) {
					t.Fatalf("out of office %q", p.OutOfOffice.Message)
				}
			}
		}
	})
}

// TestPresenceWithNumberedContactsAndABrokenPart runs the reference's
// form of contacts (people/282, which does not name the person: the
// session reads the contact once) against a server whose batch answer
// has one unreadable part: the other people's presence still arrives.
func TestPresenceWithNumberedContactsAndABrokenPart(t *testing.T) {
	f := newFake(t)
	people := map[string]string{"282": "sip:sara@contoso.com", "283": "sip:tom@contoso.com", "284": "sip:uma@contoso.com"}
	var batches int
	f.override = func(w http.ResponseWriter, r *http.Request, body string) bool {
		switch {
		case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/people/presenceSubscriptions"):
			a := f.app()
			writeJSON(w, 201, `{"rel":"presenceSubscription","id":"7","_links":{"self":{"href":"`+a+`/people/presenceSubscriptions/7"},
"memberships":{"href":"`+a+`/people/presenceSubscriptionMemberships?presenceSubscriptionId=7"},
"addToPresenceSubscription":{"href":"`+a+`/people/presenceSubscriptionMemberships?presenceSubscriptionId=7"}}}`)
			return true
		case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/batch"):
			f.mu.Lock()
			batches++
			f.mu.Unlock()
			_, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
			require.NoError(t, err)
			mr := multipart.NewReader(strings.NewReader(body), params["boundary"])
			var out bytes.Buffer
			mw := multipart.NewWriter(&out)
			for {
				p, err := mr.NextPart()
				if err != nil {
					break
				}
				req, err := http.ReadRequest(bufio.NewReader(p))
				require.NoError(t, err)
				pw, _ := mw.CreatePart(map[string][]string{"Content-Type": {"application/http; msgtype=response"}})
				segs := strings.Split(req.URL.Path, "/")
				id := segs[len(segs)-1]
				switch {
				case strings.HasSuffix(req.URL.Path, "/283/contactPresence"):
					fmt.Fprint(pw, "garbage, not a response")
				case strings.HasSuffix(req.URL.Path, "/contactPresence"):
					fmt.Fprint(pw, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n"+`{"rel":"contactPresence","availability":"Busy","activity":"Lurking at \u0007 lunch"}`)
				case people[id] != "":
					fmt.Fprintf(pw, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n"+`{"rel":"contact","uri":%q,"name":"x"}`, people[id])
				default:
					fmt.Fprint(pw, "HTTP/1.1 404 Not Found\r\n\r\n")
				}
			}
			require.NoError(t, mw.Close())
			w.Header().Set("Content-Type", "multipart/batching; boundary="+mw.Boundary())
			_, _ = w.Write(out.Bytes())
			return true
		}
		return false
	}
	tr := newTestTransport(t, f)
	sess, rec := signIn(t, tr, "secret")
	s := sess.(*session)
	s.mu.Lock()
	s.app.presenceSubscriptions = f.url(f.app() + "/people/presenceSubscriptions")
	s.app.batch = f.url(f.app() + "/batch")
	s.mu.Unlock()

	watch := []sfb.URI{"sip:sara@contoso.com", "sip:tom@contoso.com", "sip:uma@contoso.com"}
	taken, err := s.Watch(context.Background(), watch)
	require.NoError(t, err)
	require.Equal(t, watch, taken)
	ev := func(id string) string {
		return `{"link":{"rel":"contactPresence","href":"{APP}/people/` + id + `/contactPresence"},"in":{"rel":"contact","href":"{APP}/people/` + id + `"},"type":"updated"}`
	}
	f.pushSenders(`[{"rel":"people","href":"{APP}/people","events":[` + ev("282") + `,` + ev("283") + `,` + ev("284") + `,` + ev("999") + `]}]`)
	require.Eventually(t, func() bool { return len(latest(rec.all())) == 2 }, waitFor, tick)
	got := latest(rec.all())
	for _, u := range []sfb.URI{"sip:sara@contoso.com", "sip:uma@contoso.com"} {
		assert.Equal(t, sfb.AvailabilityBusy, got[u].Availability, "%s", u)
		assert.Equal(t, "Lurking at  lunch", got[u].Activity, "control characters dropped")
	}
	assert.NotContains(t, got, sfb.URI("sip:tom@contoso.com"), "his part was broken")
	f.mu.Lock()
	assert.Equal(t, 2, batches, "one batch to learn who the contacts are, one for their presence")
	f.mu.Unlock()
}
