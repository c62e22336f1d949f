package sim

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzSIPPresenceBodies feeds the bodies of batch subscriptions, category
// publications and contact-list changes from outside to their handlers: every one is
// answered with a final status, none crashes the server, and the state
// stays consistent.
func FuzzSIPPresenceBodies(f *testing.F) {
	f.Add([]byte(pidginBatch("sip:alice@contoso.com", "sip:bob@contoso.com", "sip:nobody@contoso.com")), uint8(0))
	f.Add([]byte(`<publish xmlns="http://schemas.microsoft.com/2006/09/sip/rich-presence"><publications uri="sip:alice@contoso.com">`+userStatePub(6500, 0)+notePub("x", 0)+`</publications></publish>`), uint8(1))
	f.Add([]byte(`<batchSub><action name="unsubscribe"><adhocList><resource uri="sip:bob@contoso.com"/></adhocList></action></batchSub>`), uint8(0))
	f.Add([]byte(`<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:m="http://schemas.microsoft.com/winrtc/2002/11/sip"><s:Body><m:setContact><m:groups>1</m:groups><m:URI>sip:bob@contoso.com</m:URI></m:setContact></s:Body></s:Envelope>`), uint8(2))
	f.Fuzz(func(t *testing.T, body []byte, kind uint8) {
		s, _ := newPresenceServer(t, Options{})
		ep, _ := s.testEndpoint(t, "sip:alice@contoso.com")
		var a sipAnswer
		switch kind % 3 {
		case 0:
			req := pidginSubscribe(t, "call-fuzz", "", "", "")
			req.SetBody(body)
			a = s.testSubscribe(ep, req)
		case 1:
			req := pidginPublish(t, "sip:alice@contoso.com", "")
			req.SetBody(body)
			a = s.sipService(ep, req)
		default:
			require.NoError(t, s.SetContacts("sip:alice@contoso.com", []ContactGroup{{Name: "Team"}}))
			req := pidginSOAP(t, "addGroup", "")
			req.SetBody(body)
			a = s.sipService(ep, req)
		}
		if a.status < 200 || a.status > 699 {
			t.Fatalf("status %d", a.status)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		counted := 0
		for sub := range ep.subs {
			counted += sub.counted
			for m := range sub.members {
				if _, ok := s.sipPres.watchers[m][sub]; !ok {
					t.Fatalf("%s watched but not indexed", m)
				}
			}
		}
		if su := s.sipPres.users["sip:alice@contoso.com"]; su != nil && su.categorySubs != counted {
			t.Fatalf("quota counts %d, subscriptions hold %d", su.categorySubs, counted)
		}
	})
}
