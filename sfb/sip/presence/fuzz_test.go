package presence

import (
	"reflect"
	"testing"
	"unicode/utf8"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// The fuzz targets read what a server (or, in the simulator, a client)
// sends: never a panic, and what reads without error writes back to
// something that reads the same.

func FuzzCategoryNotify(f *testing.F) {
	f.Add(msSIPBatchNotifyContentType, []byte(msSIPBatchNotify))
	f.Add(ContentTypeEventCategories, []byte(categoriesNotify))
	ct, body := Notify{List: &List{URI: "sip:a@b.c", Resources: []ListResource{{URI: "sip:d@b.c", State: InstanceResubscribe, PoolFQDN: "p"}}},
		Documents: []Categories{Describe("sip:d@b.c", sfb.Presence{Availability: sfb.AvailabilityAway, Note: "n"}, 1)}}.Marshal()
	f.Add(ct, body)
	f.Add(ContentTypeRLMI, []byte(`<list uri="sip:a@b.c" version="x"/>`))
	f.Add("multipart/related; boundary=x", []byte("--x\r\nContent-Type: application/rlmi+xml\r\n\r\n<list/>\r\n--x\r\nContent-Type: application/rlmi+xml\r\n\r\n<list/>\r\n--x--"))
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		n, err := ParseNotify(contentType, body)
		if err != nil {
			return
		}
		for _, doc := range n.Documents {
			p, _ := Apply(sfb.Presence{}, doc)
			if p.Availability != sfb.AvailabilityUnknown && AggregateNumber(p.Availability) == 0 {
				t.Fatalf("availability %q", p.Availability)
			}
			for _, s := range []string{p.Activity, p.Note} {
				if !utf8.ValidString(s) || utf8.RuneCountInString(s) > MaxTextRunes {
					t.Fatalf("text %q", s)
				}
			}
			if p.OutOfOffice != nil && p.OutOfOffice.Message == "" {
				t.Fatal("empty out-of-office note")
			}
			again, err := ParseCategories(doc.Marshal())
			if err != nil {
				t.Fatalf("what we wrote does not read: %v\n%s", err, doc.Marshal())
			}
			if !reflect.DeepEqual(doc, again) {
				t.Fatalf("round trip:\n%#v\n%#v", doc, again)
			}
		}
		if n.List != nil {
			again, err := ParseList(n.List.Marshal())
			if err != nil || !reflect.DeepEqual(*n.List, again) {
				t.Fatalf("list round trip: %v\n%#v\n%#v", err, *n.List, again)
			}
		}
	})
}

func FuzzCategoryList(f *testing.F) {
	f.Add([]byte(msPresBatchSub))
	f.Add([]byte(sipeBatchSub))
	f.Add([]byte(`<batchSub uri="sip:a@b.c"><action name="unsubscribe"><adhocList><resource uri=" "/></adhocList></action></batchSub>`))
	f.Fuzz(func(t *testing.T, body []byte) {
		s, err := ParseBatchSubscribe(body)
		if err != nil {
			return
		}
		again, err := ParseBatchSubscribe(s.Marshal())
		if err != nil {
			t.Fatalf("what we wrote does not read: %v\n%s", err, s.Marshal())
		}
		if s.ID == "" {
			s.ID = again.ID
		}
		if !reflect.DeepEqual(s, again) {
			t.Fatalf("round trip:\n%#v\n%#v", s, again)
		}
	})
}

func FuzzPublish(f *testing.F) {
	f.Add([]byte(sipePublish))
	f.Add([]byte(msPresFault))
	f.Add([]byte(`<publish><publications uri="sip:a@b.c"><publication categoryName="note" instance="0" container="400" version="1" expireType="static"><note><body type="OOF" endTime="2008-01-15T19:00:00Z">x</body></note></publication></publications></publish>`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if p, err := ParsePublish(body); err == nil {
			again, err := ParsePublish(p.Marshal())
			if err != nil {
				t.Fatalf("what we wrote does not read: %v\n%s", err, p.Marshal())
			}
			if !reflect.DeepEqual(p, again) {
				t.Fatalf("round trip:\n%#v\n%#v", p, again)
			}
		}
		if fault, err := ParseFault(body); err == nil {
			again, err := ParseFault(fault.Marshal())
			if err != nil || !reflect.DeepEqual(fault, again) {
				t.Fatalf("fault round trip: %v\n%#v\n%#v", err, fault, again)
			}
		}
	})
}

func FuzzRoamingContacts(f *testing.F) {
	f.Add([]byte(roamingContacts))
	f.Add([]byte(roamingContactsDelta))
	f.Add([]byte(msPresRoamingSelf))
	f.Add([]byte(`<contactList deltaNum="1" ucsmode="migrated"/>`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if l, err := ParseContactList(body); err == nil {
			again, err := ParseContactList(l.Marshal())
			if err != nil {
				t.Fatalf("what we wrote does not read: %v\n%s", err, l.Marshal())
			}
			if !reflect.DeepEqual(l, again) {
				t.Fatalf("round trip:\n%#v\n%#v", l, again)
			}
		}
		if r, err := ParseRoamingSelf(body); err == nil {
			again, err := ParseRoamingSelf(r.Marshal())
			if err != nil || !reflect.DeepEqual(r, again) {
				t.Fatalf("roaming self round trip: %v\n%#v\n%#v", err, r, again)
			}
		}
	})
}
