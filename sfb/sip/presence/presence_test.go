package presence

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

func TestAvailabilityRanges(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want sfb.Availability
	}{
		{0, sfb.AvailabilityUnknown}, {2999, sfb.AvailabilityUnknown},
		{3000, sfb.AvailabilityOnline}, {3500, sfb.AvailabilityOnline}, {4499, sfb.AvailabilityOnline},
		{4500, sfb.AvailabilityIdleOnline}, {5999, sfb.AvailabilityIdleOnline},
		{6000, sfb.AvailabilityBusy}, {6500, sfb.AvailabilityBusy}, {7499, sfb.AvailabilityBusy},
		{7500, sfb.AvailabilityIdleBusy}, {8999, sfb.AvailabilityIdleBusy},
		{9000, sfb.AvailabilityDoNotDisturb}, {9500, sfb.AvailabilityDoNotDisturb}, {11999, sfb.AvailabilityDoNotDisturb},
		{12000, sfb.AvailabilityBeRightBack}, {12500, sfb.AvailabilityBeRightBack}, {14999, sfb.AvailabilityBeRightBack},
		{15000, sfb.AvailabilityAway}, {15500, sfb.AvailabilityAway}, {17999, sfb.AvailabilityAway},
		{18000, sfb.AvailabilityOffline}, {18500, sfb.AvailabilityOffline}, {1 << 30, sfb.AvailabilityOffline},
	} {
		assert.Equal(t, tc.want, AvailabilityOf(tc.n), "%d", tc.n)
	}
	all := []sfb.Availability{sfb.AvailabilityOnline, sfb.AvailabilityIdleOnline, sfb.AvailabilityBusy, sfb.AvailabilityIdleBusy,
		sfb.AvailabilityDoNotDisturb, sfb.AvailabilityBeRightBack, sfb.AvailabilityAway, sfb.AvailabilityOffline}
	for _, a := range all {
		assert.Equal(t, a, AvailabilityOf(AggregateNumber(a)), "aggregate number of %s", a)
	}
	assert.Zero(t, AggregateNumber(sfb.AvailabilityUnknown))

	// What a client publishes: the numbers pidgin-sipe publishes, the
	// Idle states as their active forms, and Offline as appear-offline.
	for a, want := range map[sfb.Availability]int{
		sfb.AvailabilityOnline: 3500, sfb.AvailabilityIdleOnline: 3500, sfb.AvailabilityBusy: 6500, sfb.AvailabilityIdleBusy: 6500,
		sfb.AvailabilityDoNotDisturb: 9500, sfb.AvailabilityBeRightBack: 12500, sfb.AvailabilityAway: 15500, sfb.AvailabilityOffline: 18500,
	} {
		n, err := PublishNumber(a)
		require.NoError(t, err)
		assert.Equal(t, want, n, "publish %s", a)
	}
	_, err := PublishNumber("Lunch")
	assert.ErrorIs(t, err, sfb.ErrUnsupported)
}

func TestActivityTokens(t *testing.T) {
	assert.Equal(t, sfb.ActivityPresenting, ActivityOf("in-presentation", ""))
	assert.Equal(t, sfb.ActivityInAMeeting, ActivityOf("In-A-Meeting", ""))
	assert.Equal(t, "Team sync", ActivityOf("in-a-meeting", "Team sync"), "custom text wins")
	assert.Empty(t, ActivityOf("Busy", ""), "a token restating the availability is no activity")
	assert.Equal(t, "out-to-lunch", ActivityOf("out-to-lunch", ""), "other tokens pass")
	for _, a := range []string{sfb.ActivityInAMeeting, sfb.ActivityInAConference, sfb.ActivityOnThePhone, sfb.ActivityPresenting,
		sfb.ActivityUrgentInterruptionsOnly, sfb.ActivityOffWork, "Reading the manual"} {
		tok, custom := ActivityToken(a)
		assert.Equal(t, a, ActivityOf(tok, custom), "round trip of %q", a)
	}
	tok, custom := ActivityToken(sfb.ActivityPresenting)
	assert.Equal(t, "in-presentation", tok)
	assert.Empty(t, custom)
	for _, d := range []sfb.DeviceType{sfb.DevicePC, sfb.DeviceMobile, sfb.DeviceWeb, sfb.DeviceDeskPhone} {
		assert.Equal(t, d, DeviceOf(DeviceName(d)))
		assert.Equal(t, d, DeviceOf(string(d)), "UCWA's spelling %s", d)
	}
	assert.Equal(t, sfb.DeviceUnknown, DeviceOf("toaster"))
}

func TestApplyCategoriesNotify(t *testing.T) {
	doc, err := ParseCategories([]byte(categoriesNotify))
	require.NoError(t, err)
	assert.Equal(t, "sip:alice@contoso.com", doc.URI)
	require.Len(t, doc.Categories, 5)
	st := doc.Categories[0]
	assert.Equal(t, uint32(3), st.Version)
	assert.Equal(t, 200, st.Container)
	assert.Equal(t, time.Date(2008, 1, 22, 23, 41, 5, 450e6, time.UTC), st.PublishTime)
	require.NotNil(t, st.State)
	assert.Equal(t, "aggregateState", st.State.Type)
	assert.Equal(t, &ContactCard{DisplayName: "Alice Example", Email: "alice@contoso.com", Title: "Engineer"}, doc.Categories[3].ContactCard)
	assert.Contains(t, string(doc.Categories[4].Raw), `mailboxID="alice@contoso.com"`, "calendarData kept raw")

	before := sfb.Presence{Availability: sfb.AvailabilityOnline, Note: "old", Changed: time.Unix(1, 0)}
	got, warnings := Apply(before, doc)
	assert.Empty(t, warnings)
	assert.Equal(t, sfb.Presence{
		Availability: sfb.AvailabilityBusy, Activity: "Team sync", Note: "Back at 3",
		OutOfOffice: &sfb.OutOfOffice{Message: "On leave until Monday", Until: time.Date(2008, 1, 28, 0, 0, 0, 0, time.UTC)},
		Device:      sfb.DeviceMobile, LastActive: time.Date(2008, 1, 22, 23, 40, 0, 0, time.UTC), Changed: time.Unix(1, 0),
	}, got)
}

func TestApplyPartialDocuments(t *testing.T) {
	cur := sfb.Presence{Availability: sfb.AvailabilityAway, Note: "gone fishing", OutOfOffice: &sfb.OutOfOffice{Message: "away"}}
	// A state alone leaves the notes.
	got, _ := Apply(cur, mustParse(t, `<categories uri="sip:a@b.c"><category name="state" instance="0" container="200" version="2"><state xsi:type="aggregateState" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><availability>3500</availability></state></category></categories>`))
	assert.Equal(t, sfb.AvailabilityOnline, got.Availability)
	assert.Equal(t, "gone fishing", got.Note)
	require.NotNil(t, got.OutOfOffice)
	// A note category without a body clears both notes and leaves the state.
	got, _ = Apply(cur, mustParse(t, `<categories uri="sip:a@b.c"><category name="note" instance="0" container="200" version="3"><note/></category></categories>`))
	assert.Equal(t, sfb.AvailabilityAway, got.Availability)
	assert.Empty(t, got.Note)
	assert.Nil(t, got.OutOfOffice)
	// A state without availability (pidgin-sipe skips it) changes nothing.
	got, _ = Apply(cur, mustParse(t, `<categories uri="sip:a@b.c"><category name="state" instance="0" container="200" version="2"><state/></category></categories>`))
	assert.Equal(t, cur, got)
	// A number below every range is no availability, said in a warning.
	got, warnings := Apply(cur, mustParse(t, `<categories uri="sip:a@b.c"><category name="state"><state><availability>100</availability><activity token="`+strings.Repeat("x", MaxTextRunes+1)+`"/></state></category></categories>`))
	assert.Equal(t, sfb.AvailabilityUnknown, got.Availability)
	assert.Len(t, warnings, 2, "%v", warnings)
	assert.Len(t, got.Activity, MaxTextRunes, "cut")
	// The aggregate state wins over other states in the same document.
	got, _ = Apply(cur, mustParse(t, `<categories uri="sip:a@b.c"><category name="state"><state xsi:type="machineState" xmlns:xsi="x"><availability>3500</availability></state></category><category name="state"><state xsi:type="aggregateState" xmlns:xsi="x"><availability>9500</availability></state></category></categories>`))
	assert.Equal(t, sfb.AvailabilityDoNotDisturb, got.Availability)
}

func mustParse(t *testing.T, body string) Categories {
	t.Helper()
	doc, err := ParseCategories([]byte(body))
	require.NoError(t, err)
	return doc
}

func TestDescribeApplyRoundTrip(t *testing.T) {
	for _, p := range []sfb.Presence{
		{Availability: sfb.AvailabilityIdleBusy, Activity: sfb.ActivityPresenting, Device: sfb.DeviceWeb},
		{Availability: sfb.AvailabilityOffline},
		{Availability: sfb.AvailabilityOnline, Activity: "Writing <docs> & tests", Note: "Hi \"there\"",
			OutOfOffice: &sfb.OutOfOffice{Message: "Back on Monday", Until: time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)},
			LastActive:  time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC)},
	} {
		body := Describe("sip:alice@contoso.com", p, 4).Marshal()
		doc, err := ParseCategories(body)
		require.NoError(t, err, "%s", body)
		got, warnings := Apply(sfb.Presence{Note: "stale"}, doc)
		assert.Empty(t, warnings)
		assert.Equal(t, p, got, "%s", body)
	}
}

func TestParseNotifyMSSIPExample(t *testing.T) {
	n, err := ParseNotify(msSIPBatchNotifyContentType, []byte(msSIPBatchNotify))
	require.NoError(t, err)
	require.NotNil(t, n.List)
	assert.Equal(t, "sip:watcher@tradewind.com", n.List.URI)
	assert.True(t, n.List.FullState)
	assert.Equal(t, uint32(1), n.List.Version)
	require.Len(t, n.List.Resources, 3)
	assert.Equal(t, ListResource{URI: "sip:contact2@tradewind.com", State: InstanceActive, CID: "contact2@tradewind.com"}, n.List.Resources[1])
	assert.Empty(t, n.Documents, "pidf parts are not categories")
	assert.Empty(t, n.PartErrors)
}

func TestNotifyRoundTripAndBadPart(t *testing.T) {
	docs := []Categories{
		Describe("sip:bob@contoso.com", sfb.Presence{Availability: sfb.AvailabilityBusy, Activity: sfb.ActivityOnThePhone}, 1),
		Describe("sip:carol@contoso.com", sfb.Presence{Availability: sfb.AvailabilityAway, Note: "lunch"}, 1),
	}
	list := &List{URI: "sip:alice@contoso.com", Version: 2, FullState: true, Resources: []ListResource{
		{URI: "sip:bob@contoso.com", State: InstanceActive, CID: "bob@contoso.com"},
		{URI: "sip:carol@contoso.com", State: InstanceActive, CID: "carol@contoso.com"},
		{URI: "sip:nobody@contoso.com", State: InstanceTerminated, Reason: "noresource"},
		{URI: "sip:far@fabrikam.com", State: InstanceResubscribe, PoolFQDN: "pool2.fabrikam.com"},
	}}
	ct, body := Notify{List: list, Documents: docs}.Marshal()
	assert.True(t, strings.HasPrefix(ct, "multipart/related;"), ct)
	n, err := ParseNotify(ct, body)
	require.NoError(t, err)
	assert.Equal(t, list, n.List)
	require.Len(t, n.Documents, 2)
	for i := range docs {
		want, _ := Apply(sfb.Presence{}, docs[i])
		got, _ := Apply(sfb.Presence{}, n.Documents[i])
		assert.Equal(t, want, got)
	}

	// One categories document alone is sent as such.
	ct, body = Notify{Documents: docs[:1]}.Marshal()
	assert.Equal(t, ContentTypeEventCategories, ct)
	n, err = ParseNotify(ct, body)
	require.NoError(t, err)
	assert.Nil(t, n.List)
	assert.Len(t, n.Documents, 1)

	// A broken part does not drop the others.
	broken := "--b\r\nContent-Type: application/msrtc-event-categories+xml\r\n\r\n" + string(docs[0].Marshal()) +
		"\r\n--b\r\nContent-Type: application/msrtc-event-categories+xml\r\n\r\n<categories uri=\"sip:x@y.z\"><category name=\"state\" version=\"many\"/></categories>" +
		"\r\n--b\r\nContent-Type: application/msrtc-event-categories+xml\r\n\r\n" + string(docs[1].Marshal()) + "\r\n--b--\r\n"
	n, err = ParseNotify(`multipart/related; type="application/msrtc-event-categories+xml"; boundary=b`, []byte(broken))
	require.NoError(t, err)
	assert.Len(t, n.Documents, 2)
	require.Len(t, n.PartErrors, 1)
	assert.Contains(t, n.PartErrors[0].Error(), "part 2")
	assert.Contains(t, n.PartErrors[0].Error(), `"sip:x@y.z"`)

	_, err = ParseNotify("multipart/related", body)
	assert.ErrorContains(t, err, "boundary")
	_, err = ParseNotify("text/plain", body)
	assert.ErrorContains(t, err, "unsupported")
}

func TestBatchSubscribe(t *testing.T) {
	s, err := ParseBatchSubscribe([]byte(msPresBatchSub))
	require.NoError(t, err)
	assert.Equal(t, BatchSubscribe{URI: "sip:bob@contoso.com", Action: ActionSubscribe, ID: "63792024",
		Resources:  []Resource{{URI: "sip:alice@contoso.com"}, {URI: "sip:john@contoso.com", Context: true}},
		Categories: []string{"calendarData", "contactCard", "note", "services", "state"}}, s)

	s, err = ParseBatchSubscribe([]byte(sipeBatchSub))
	require.NoError(t, err)
	want := BatchSubscribe{URI: "sip:alice@contoso.com", Action: ActionSubscribe, ID: "63792024",
		Resources:  []Resource{{URI: "sip:bob@contoso.com"}, {URI: "sip:carol@contoso.com", Context: true}},
		Categories: DefaultCategories}
	assert.Equal(t, want, s)
	// What we write is what pidgin-sipe writes, but for its line breaks.
	assert.Equal(t, strings.ReplaceAll(sipeBatchSub, "\n", ""), string(want.Marshal()))

	un := BatchSubscribe{URI: "sip:alice@contoso.com", Action: ActionUnsubscribe, Resources: []Resource{{URI: "sip:bob@contoso.com"}}}
	got, err := ParseBatchSubscribe(un.Marshal())
	require.NoError(t, err)
	assert.Equal(t, ActionUnsubscribe, got.Action)
	assert.Equal(t, un.Resources, got.Resources)

	_, err = ParseBatchSubscribe([]byte(`<batchSub uri="sip:a@b.c"><action name="explode"/></batchSub>`))
	assert.ErrorContains(t, err, `unknown action "explode"`)
	_, err = ParseBatchSubscribe([]byte(`<adhoclist/>`))
	assert.ErrorContains(t, err, "want <batchSub>")
	var many strings.Builder
	many.WriteString(`<batchSub uri="sip:a@b.c"><action name="subscribe"><adhocList>`)
	for i := 0; i <= MaxResources; i++ {
		fmt.Fprintf(&many, `<resource uri="sip:u%d@b.c"/>`, i)
	}
	many.WriteString(`</adhocList></action></batchSub>`)
	_, err = ParseBatchSubscribe([]byte(many.String()))
	assert.ErrorIs(t, err, ErrTooLarge)
}

func TestPublishAndFault(t *testing.T) {
	p, err := ParsePublish([]byte(sipePublish))
	require.NoError(t, err)
	assert.Equal(t, "sip:alice@contoso.com", p.URI)
	require.Len(t, p.Publications, 4)
	user := p.Publications[0]
	assert.Equal(t, "state", user.Name)
	assert.Equal(t, uint32(0x20000000), *user.Instance)
	assert.Equal(t, 2, user.Container)
	assert.Equal(t, uint32(7), user.Version)
	assert.Equal(t, ExpireStatic, user.ExpireType)
	assert.Equal(t, &State{Type: "userState", Manual: true, Availability: 6500, EndpointLocation: true}, user.State)
	assert.Equal(t, ExpireEndpoint, p.Publications[2].ExpireType)
	assert.Equal(t, "machineState", p.Publications[2].State.Type)
	clear := p.Publications[3]
	require.NotNil(t, clear.Expires)
	assert.Zero(t, *clear.Expires)
	assert.Nil(t, clear.Note)

	// Our writing reads back the same.
	again, err := ParsePublish(p.Marshal())
	require.NoError(t, err)
	assert.Equal(t, p, again)

	_, err = ParsePublish([]byte(`<publish><publications uri="sip:a@b.c"><publication categoryName="note"/></publications></publish>`))
	assert.ErrorContains(t, err, "lacks instance")

	f, err := ParseFault([]byte(msPresFault))
	require.NoError(t, err)
	assert.Equal(t, Fault{Code: FaultWrongDelta, Operations: []FaultOperation{{Index: 1, Version: 1, CurVersion: 2}}}, f)
	again2, err := ParseFault(f.Marshal())
	require.NoError(t, err)
	assert.Equal(t, f, again2)
	_, err = ParseFault([]byte(`<Fault><Faultcode>x</Faultcode><details><operation index="0" curVersion="1"/></details></Fault>`))
	assert.ErrorContains(t, err, "index")
}

func TestRoamingSelf(t *testing.T) {
	r, err := ParseRoamingSelf([]byte(msPresRoamingSelf))
	require.NoError(t, err)
	cats := r.Categories.Categories
	require.Len(t, cats, 5)
	assert.Equal(t, "aggregateState", cats[0].State.Type)
	assert.Equal(t, 3500, cats[0].State.Availability)
	assert.Equal(t, "aggregateMachineState", cats[1].State.Type)
	assert.Equal(t, uint32(536870912), *cats[2].Instance)
	assert.Equal(t, uint32(7), cats[2].Version)
	assert.Equal(t, "userState", cats[2].State.Type)
	assert.Equal(t, "Lunch", cats[3].Note.Text)
	assert.Nil(t, cats[4].Instance, "a container cleared")
	assert.Equal(t, 300, cats[4].Container)

	again, err := ParseRoamingSelf(r.Marshal())
	require.NoError(t, err)
	assert.Equal(t, r, again)
}

func TestContactList(t *testing.T) {
	l, err := ParseContactList([]byte(roamingContacts))
	require.NoError(t, err)
	assert.Equal(t, ContactList{DeltaNum: 7,
		Groups:   []Group{{ID: "1", Name: "~"}, {ID: "2", Name: "Team"}},
		Contacts: []Contact{{URI: "bob@contoso.com", Groups: []string{"1", "2"}, Subscribed: true}, {URI: "sip:carol@contoso.com", Name: "Caro", Groups: []string{"2"}, Subscribed: true}},
	}, l)
	again, err := ParseContactList(l.Marshal())
	require.NoError(t, err)
	assert.Equal(t, l, again)

	d, err := ParseContactList([]byte(roamingContactsDelta))
	require.NoError(t, err)
	assert.True(t, d.Delta)
	assert.Equal(t, uint32(8), d.DeltaNum)
	assert.Equal(t, uint32(7), d.PrevDeltaNum)
	assert.Equal(t, []Contact{{URI: "dave@contoso.com", Groups: []string{"1"}, Subscribed: true}}, d.AddedContacts)
	assert.Equal(t, []Contact{{URI: "bob@contoso.com"}}, d.DeletedContacts)
	assert.Equal(t, []Group{{ID: "2", Name: "Core team"}}, d.ModifiedGroups)
	again, err = ParseContactList(d.Marshal())
	require.NoError(t, err)
	assert.Equal(t, d, again)

	_, err = ParseContactList([]byte(`<roamingData/>`))
	assert.ErrorContains(t, err, "want <contactList> or <contactDelta>")
	_, err = ParseContactList([]byte(`<contactList deltaNum="-1"/>`))
	assert.ErrorContains(t, err, "deltaNum")
}

func TestLimits(t *testing.T) {
	big := make([]byte, MaxBodySize+1)
	for _, parse := range []func([]byte) error{
		func(b []byte) error { _, err := ParseCategories(b); return err },
		func(b []byte) error { _, err := ParseBatchSubscribe(b); return err },
		func(b []byte) error { _, err := ParsePublish(b); return err },
		func(b []byte) error { _, err := ParseContactList(b); return err },
		func(b []byte) error { _, err := ParseNotify(ContentTypeEventCategories, b); return err },
	} {
		err := parse(big)
		assert.True(t, errors.Is(err, ErrTooLarge), "%v", err)
	}
	var many strings.Builder
	many.WriteString(`<categories uri="sip:a@b.c">`)
	for i := 0; i <= MaxCategories; i++ {
		many.WriteString(`<category name="x"/>`)
	}
	many.WriteString(`</categories>`)
	_, err := ParseCategories([]byte(many.String()))
	assert.ErrorIs(t, err, ErrTooLarge)
	assert.ErrorContains(t, err, `"sip:a@b.c"`)
}
