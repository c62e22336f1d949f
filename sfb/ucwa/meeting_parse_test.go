package ucwa

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

const testMeetingURI = "sip:bob@contoso.com;gruu;opaque=app:conf:focus:id:IB88RLLY"

func TestDecodeMeetingKeepsWhatIsValid(t *testing.T) {
	inv := &OnlineMeetingInvitation{OnlineMeetingURI: "SIP:Bob@Contoso.com;gruu;opaque=app:conf:focus:id:IB88RLLY", Subject: "from the invitation"}
	om := &OnlineMeeting{JoinURL: "https://meet.contoso.com/bob/IB88RLLY", Subject: "Review\n<b>numbers</b>\u202e", OrganizerURI: "sip:bob@contoso.com",
		OrganizerName: "Bob\x00 Builder", ConferenceID: "12983487"}
	var dial PhoneDialInInformation
	require.NoError(t, json.Unmarshal([]byte(`{"conferenceId":"555","_embedded":{"dialInRegion":[
		{"name":"Redmond","number":"tel:+14255550001"},{"name":"Bad","number":"tel:+1<script>"},{"name":"Office\u0007","number":"+49 (611) 555-0"}]}}`), &dial))
	m, problems, err := decodeMeeting(inv, om, &dial)
	require.NoError(t, err)
	assert.Equal(t, sfb.URI(testMeetingURI), m.URI, "the address canonical, the conference ID's case kept")
	assert.Equal(t, "https://meet.contoso.com/bob/IB88RLLY", m.JoinURL)
	assert.Equal(t, "Review <b>numbers</b>", m.Subject, "one line, no overrides; HTML is escaped by whoever shows it")
	assert.Equal(t, sfb.Person{URI: "sip:bob@contoso.com", DisplayName: "Bob Builder"}, m.Organizer)
	assert.Equal(t, "555", m.ConferenceID, "the dial-in information's wins")
	assert.Equal(t, []sfb.DialInNumber{{Region: "Redmond", Number: "+14255550001"}, {Region: "Office", Number: "+49 (611) 555-0"}}, m.DialIn)
	require.Len(t, problems, 1)
	assert.Contains(t, problems[0], "not a phone number")
	assert.True(t, m.Start.IsZero() && m.End.IsZero(), "UCWA carries no start or end")
}

func TestDecodeMeetingRefusesBadFields(t *testing.T) {
	for _, join := range []string{"javascript:alert(1)", "https://user:pw@meet.contoso.com/x", "https:///nohost", "https://meet.contoso.com/a b",
		"//meet.contoso.com/x", "ftp://meet.contoso.com/x", "https://meet.contoso.com/\x00", "https://meet.contoso.com/" + strings.Repeat("a", maxJoinURL), "%zz"} {
		m, problems, err := decodeMeeting(&OnlineMeetingInvitation{OnlineMeetingURI: testMeetingURI}, &OnlineMeeting{JoinURL: join}, nil)
		require.NoError(t, err, join)
		assert.Empty(t, m.JoinURL, join)
		assert.Len(t, problems, 1, join)
	}
	for _, uri := range []string{"", "tel:+1555", "sip:nobody", "sip:bob@contoso.com;opaque=a b", `sip:bob@contoso.com;x="y"`, "sip:bob@contoso.com;" + strings.Repeat("x", 500)} {
		_, _, err := decodeMeeting(&OnlineMeetingInvitation{OnlineMeetingURI: uri}, nil, nil)
		assert.Error(t, err, uri)
	}
	m, problems, err := decodeMeeting(&OnlineMeetingInvitation{OnlineMeetingURI: testMeetingURI, Subject: strings.Repeat("é", 300)},
		&OnlineMeeting{OrganizerURI: "not an address", ConferenceID: "12 34"}, nil)
	require.NoError(t, err)
	assert.Equal(t, maxMeetingSubject, utf8.RuneCountInString(m.Subject), "a long subject is cut, not refused")
	assert.Empty(t, m.Organizer.URI)
	assert.Empty(t, m.ConferenceID)
	assert.Len(t, problems, 2)

	m, _, err = decodeMeeting(&OnlineMeetingInvitation{OnlineMeetingURI: testMeetingURI}, nil, nil)
	require.NoError(t, err)
	assert.Equal(t, sfb.Meeting{URI: testMeetingURI}, m, "an invitation without subject or meeting")
}

func TestIsMissedAndCancellation(t *testing.T) {
	for subcode, missed := range map[string]bool{"Canceled": true, "Missed": true, "ConnectedElsewhere": false, "Declined": false} {
		e := Event{Status: "Failure", Reason: &ErrorBody{Code: "RemoteFailure", Subcode: subcode}}
		assert.Equal(t, missed, isMissed(e), subcode)
		assert.Equal(t, subcode == "Canceled", isCancellation(e), subcode)
	}
	assert.True(t, isMissed(Event{Status: "Failure", Reason: &ErrorBody{Code: "Timeout"}}))
	assert.False(t, isMissed(Event{Status: "Failure"}))
	assert.False(t, isCancellation(Event{Status: "Success", Reason: &ErrorBody{Subcode: "Canceled"}}))
}

func TestOffersVideo(t *testing.T) {
	assert.True(t, offersVideo("data:application/sdp,v=0%0D%0Am=audio 1 RTP/AVP 0%0D%0Am=video 2 RTP/AVP 122%0D%0A"))
	assert.False(t, offersVideo("data:application/sdp,v=0%0D%0Am=audio 1 RTP/AVP 0%0D%0A"))
	assert.False(t, offersVideo("data:application/sdp;base64,base64-encoded-sdp"))
	assert.False(t, offersVideo(""))
}

// FuzzMeetingInvitation: whatever the server sends as an invitation, its
// onlineMeeting and its dial-in information, the meeting is refused with
// an error or every field in it is valid.
func FuzzMeetingInvitation(f *testing.F) {
	f.Add([]byte(`{"onlineMeetingUri":"sip:john@contoso.com","subject":"Strategy","threadId":"292e"}`),
		[]byte(`{"joinUrl":"https://meet.contoso.com/bmauldin/IB88RLLY","conferenceId":"12983487","organizerUri":"sip:bmauldin@contoso.com","expirationTime":"\/Date(136...000)\/"}`),
		[]byte(`{"conferenceId":"12983487","_embedded":{"dialInRegion":[{"name":"Redmond","number":"tel:+14255550001"}]}}`))
	f.Add([]byte(`{"onlineMeetingUri":"sip:a@b;gruu;opaque=app:conf:focus:id:X","subject":"<script>\u202e"}`),
		[]byte(`{"joinUrl":"javascript:alert(1)","subject":5}`), []byte(`{"_embedded":{"dialInRegion":{"number":"tel:+1"}}}`))
	f.Add([]byte(`{}`), []byte(`{"onlineMeetingUri":"sip:x@y","joinUrl":"http://[::1]:80/x"}`), []byte(`null`))
	f.Fuzz(func(t *testing.T, invJSON, omJSON, dialJSON []byte) {
		var inv OnlineMeetingInvitation
		var om OnlineMeeting
		var dial PhoneDialInInformation
		invp, omp, dialp := &inv, &om, &dial
		if json.Unmarshal(invJSON, invp) != nil {
			invp = nil
		}
		if json.Unmarshal(omJSON, omp) != nil {
			omp = nil
		}
		if json.Unmarshal(dialJSON, dialp) != nil {
			dialp = nil
		}
		m, _, err := decodeMeeting(invp, omp, dialp)
		if err != nil {
			return
		}
		addr, _, _ := strings.Cut(string(m.URI), ";")
		if _, err := sfb.ParseURI(addr); err != nil || len(m.URI) > maxURILength+10 || strings.ContainsAny(string(m.URI), " \t\r\n<>\"") {
			t.Fatalf("meeting URI %q accepted", m.URI)
		}
		if m.JoinURL != "" {
			u, err := url.Parse(m.JoinURL)
			if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || strings.ContainsAny(m.JoinURL, " \t\r\n") {
				t.Fatalf("join URL %q accepted", m.JoinURL)
			}
		}
		checkLine := func(what, s string, max int) {
			if !utf8.ValidString(s) || utf8.RuneCountInString(s) > max || strings.IndexFunc(s, unicode.IsControl) >= 0 || strings.ContainsRune(s, '\u202e') {
				t.Fatalf("%s %q accepted", what, s)
			}
		}
		checkLine("subject", m.Subject, maxMeetingSubject)
		checkLine("organizer name", m.Organizer.DisplayName, maxDisplayName)
		if m.Organizer.URI != "" {
			if _, err := sfb.ParseURI(string(m.Organizer.URI)); err != nil {
				t.Fatalf("organizer %q accepted", m.Organizer.URI)
			}
		}
		if len(m.ConferenceID) > maxConferenceID || strings.IndexFunc(m.ConferenceID, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }) >= 0 {
			t.Fatalf("conference ID %q accepted", m.ConferenceID)
		}
		if len(m.DialIn) > maxDialInRegions {
			t.Fatalf("%d dial-in regions", len(m.DialIn))
		}
		for _, d := range m.DialIn {
			checkLine("region", d.Region, maxRegionName)
			if d.Number == "" || len(d.Number) > maxPhoneNumber || strings.Trim(d.Number, "+0123456789 -().") != "" {
				t.Fatalf("dial-in number %q accepted", d.Number)
			}
		}
	})
}

// TestMeetingEventsOffline feeds meeting and call events to a session
// whose every request fails: what the events carry is reported, what
// needs a fetch is logged and skipped, and nothing stops the batch.
func TestMeetingEventsOffline(t *testing.T) {
	s := newOfflineSession(t)
	rec := &recorder{}
	s.handler = rec.handle
	comm := `{"rel":"communication","href":"/ucwa/oauth/v1/applications/1/communication","events":[%s]}`
	batch := func(events ...string) Events {
		var evs Events
		require.NoError(t, json.Unmarshal([]byte(`{"_links":{"next":{"href":"/e?ack=2"}},"sender":[`+
			strings.ReplaceAll(comm, "%s", strings.Join(events, ","))+`]}`), &evs))
		return evs
	}
	from := `"_embedded":{"from":{"rel":"participant","name":"Bob","uri":"sip:bob@contoso.com","organizer":true,"_links":{"self":{"href":"/c/1/participants/bob@contoso.com"}}}}`
	meetingInv := `{"link":{"rel":"onlineMeetingInvitation","href":"/inv/m1"},"type":"started","_embedded":{"onlineMeetingInvitation":{"rel":"onlineMeetingInvitation",
		"direction":"Incoming","state":"Connecting","onlineMeetingUri":"` + testMeetingURI + `","subject":"Hi","threadId":"t1","_links":{"conversation":{"href":"/c/1"}},` + from + `}}}`
	callInv := `{"link":{"rel":"audioVideoInvitation","href":"/inv/c1"},"type":"started","_embedded":{"audioVideoInvitation":{"rel":"audioVideoInvitation",
		"direction":"Incoming","state":"Connecting","threadId":"t2","_links":{"decline":{"href":"/inv/c1/decline"}},` + from + `}}}`
	s.processBatch(batch(
		`{"link":{"rel":"onlineMeetingInvitation","href":"/inv/x"},"type":"started"}`, // needs a fetch
		`{"link":{"rel":"audioVideoInvitation","href":"/inv/y"},"type":"updated"}`,    // needs a fetch
		`{"link":{"rel":"onlineMeetingInvitation","href":"/inv/z"},"type":"started","_embedded":{"onlineMeetingInvitation":{"direction":"Incoming","onlineMeetingUri":"javascript:x"}}}`,
		meetingInv, callInv), "/e?ack=1")
	evs := rec.all()
	require.Len(t, evs, 2)
	m := evs[0].(sfb.MeetingInvited)
	assert.Equal(t, sfb.URI(testMeetingURI), m.Meeting.URI)
	assert.Empty(t, m.Meeting.JoinURL, "the onlineMeeting could not be read")
	assert.Equal(t, sfb.Person{URI: "sip:bob@contoso.com", DisplayName: "Bob"}, m.Meeting.Organizer, "the organiser flag of the sender")
	assert.Equal(t, sfb.Conversation{ThreadID: "t1", Peer: "sip:bob@contoso.com"}, m.Conversation)
	c := evs[1].(sfb.CallRinging)
	assert.Equal(t, "https://lyncweb.contoso.com/inv/c1", c.ID)
	assert.False(t, c.Video)

	s.processBatch(batch(
		`{"link":{"rel":"onlineMeetingInvitation","href":"/inv/m1"},"type":"completed","status":"Failure","reason":{"code":"RemoteFailure","subcode":"Canceled"}}`,
		`{"link":{"rel":"audioVideoInvitation","href":"/inv/c1"},"type":"completed","status":"Failure","reason":{"code":"RemoteFailure","subcode":"Canceled"}}`,
		`{"link":{"rel":"audioVideoInvitation","href":"/inv/unknown"},"type":"completed","status":"Failure","reason":{"code":"RemoteFailure","subcode":"Canceled"}}`,
	), "/e?ack=2")
	evs = rec.all()
	require.Len(t, evs, 4)
	cancelled := evs[2].(sfb.MeetingInvited)
	assert.True(t, cancelled.Cancelled)
	assert.Equal(t, m.Meeting, cancelled.Meeting, "the meeting as it was known")
	assert.NotEqual(t, m.ID, cancelled.ID)
	ended := evs[3].(sfb.CallEnded)
	assert.Equal(t, c.ID, ended.ID)
	assert.True(t, ended.Missed)
	assert.Equal(t, c.From, ended.From)
	require.NoError(t, s.DeclineCall(context.Background(), c.ID, sfb.CallDeclineLocal), "no longer ringing")
}
