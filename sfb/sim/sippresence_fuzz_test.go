package sim

import "testing"

// FuzzSIPPresenceBodies feeds the bodies of batch subscriptions and
// category publications from outside to their handlers: every one is
// answered with a final status, none crashes the server, and the state
// stays consistent.
func FuzzSIPPresenceBodies(f *testing.F) {
	f.Add([]byte(pidginBatch("sip:alice@contoso.com", "sip:bob@contoso.com", "sip:nobody@contoso.com")), false)
	f.Add([]byte(`<publish xmlns="http://schemas.microsoft.com/2006/09/sip/rich-presence"><publications uri="sip:alice@contoso.com">`+userStatePub(6500, 0)+notePub("x", 0)+`</publications></publish>`), true)
	f.Add([]byte(`<batchSub><action name="unsubscribe"><adhocList><resource uri="sip:bob@contoso.com"/></adhocList></action></batchSub>`), false)
	f.Fuzz(func(t *testing.T, body []byte, publish bool) {
		s, _ := newPresenceServer(t, Options{})
		ep, _ := s.testEndpoint(t, "sip:alice@contoso.com")
		var a sipAnswer
		if publish {
			req := pidginPublish(t, "sip:alice@contoso.com", "")
			req.SetBody(body)
			a = s.sipService(ep, req)
		} else {
			req := pidginSubscribe(t, "call-fuzz", "", "", "")
			req.SetBody(body)
			a = s.sipSubscribe(ep, req)
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
