// Command record runs pidgin-sipe (in finch, under tmux) against a canned
// SfB Front End and writes what pidgin-sipe sends, message by message, as
// the fixtures in internal/pidginsipe/recorded/session/ (README.md there says what
// each file holds and how to record them again):
//
//	go run -tags goolm ./internal/pidginsipe/record -out internal/pidginsipe/recorded/session
//
// The server answers as OCS/SfB does in pidgin-sipe's own recordings:
// MS-SIPAE NTLM (401 offer, 401 CHALLENGE, signed 200), every later
// message signed; 200 to subscriptions, SERVICE, INVITE (with SDP),
// MESSAGE, INFO and BYE; a presence NOTIFY, an IM inside the dialog and an
// INVITE of its own towards pidgin-sipe.
package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/pidginsipe"
)

const (
	domain   = "contoso.com"
	fqdn     = "fe01.contoso.com"
	alice    = "alice@" + domain
	bob      = "bob@" + domain
	carol    = "carol@" + domain
	password = "Passw0rd!"
	step     = 20 * time.Second
)

// stop ends the running client, so that a failed recording leaves no
// finch behind.
var stop = func() {}

func fatalf(format string, args ...any) {
	stop()
	log.Fatalf(format, args...)
}

func fatal(err error) { fatalf("%v", err) }

func main() {
	out := flag.String("out", "internal/pidginsipe/recorded/session", "directory for the fixtures")
	keep := flag.Bool("keep", false, "keep finch's HOME and debug log (printed)")
	trace := flag.Bool("trace", false, "log every message")
	flag.Parse()
	log.SetFlags(0)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fatal(err)
	}
	srv := newServer(domain, fqdn, map[string]string{"alice": password})
	srv.contacts, srv.trace = bob, *trace
	go srv.serve(ln)

	dir, err := os.MkdirTemp("", "sipe-record-")
	if err != nil {
		fatal(err)
	}
	ctx := context.Background()
	c, err := pidginsipe.Start(ctx, dir, pidginsipe.Account{
		SignIn: alice, Login: `CONTOSO\alice`, Password: password, Server: ln.Addr().String(),
	})
	if err != nil {
		fatal(err)
	}
	stop = c.Close
	defer func() {
		if *keep {
			log.Printf("record: finch's files are in %s", dir)
		} else {
			_ = os.RemoveAll(dir)
		}
	}()
	if err := c.WaitConnected(ctx, step); err != nil {
		fatal(err)
	}
	run(ctx, c, srv)
	c.Close()
	srv.wait(0, step, "un-REGISTER", func(m *message) bool {
		return m.method() == "REGISTER" && m.isRequest() && m.get("Expires") == "0"
	})
	if err := write(*out, srv); err != nil {
		fatal(err)
	}
}

// run leads pidgin-sipe through what the fixtures cover.
func run(ctx context.Context, c *pidginsipe.Client, srv *server) {
	at := 0
	must := func(err error) {
		if err != nil {
			fatalf("record: %v\nscreen:\n%s", err, c.Screen())
		}
	}
	isRequest := func(method string) func(*message) bool {
		return func(m *message) bool { return m.isRequest() && m.method() == method }
	}

	// The contact list comes with the 200 to its subscription; bob on
	// it is subscribed to (batched), and the server's NOTIFY makes him
	// available.
	contacts, _ := srv.wait(0, step, "SUBSCRIBE to vnd-microsoft-roaming-contacts", func(m *message) bool {
		return m.isRequest() && m.method() == "SUBSCRIBE" && m.get("Event") == "vnd-microsoft-roaming-contacts"
	})
	sub, _ := srv.wait(0, step, "presence SUBSCRIBE for bob", func(m *message) bool {
		return m.isRequest() && m.method() == "SUBSCRIBE" && m.get("Event") == "presence" && strings.Contains(string(m.body)+m.start, bob)
	})
	srv.request("NOTIFY", contactURI(sub), "<sip:"+alice+">;tag="+tagFor(sub.get("Call-ID")), sub.get("From"), sub.get("Call-ID"),
		[][2]string{{"Event", "presence"}, {"Subscription-State", "active;expires=3600"}, {"Content-Type", "application/msrtc-event-categories+xml"}}, []byte(stateCategory(bob, 3500)))
	must(poll(ctx, step, func() (bool, error) {
		st, err := c.BuddyStatus(ctx, bob)
		return st == "available", err
	}))

	// A contact added as a user does: SERVICE setContact; the server's
	// contactDelta NOTIFY makes pidgin-sipe subscribe to carol's presence.
	at = srv.position()
	must(c.AddBuddy(ctx, carol, "Colleagues"))
	srv.wait(at, step, "SERVICE setContact", func(m *message) bool {
		return m.isRequest() && m.method() == "SERVICE" && bytes.Contains(m.body, []byte("setContact"))
	})
	delta := `<contactDelta deltaNum="2" prevDeltaNum="1" xmlns="http://schemas.microsoft.com/2006/09/sip/roaming-contacts"><addedContact uri="` + carol + `" name="" groups="1 " subscribed="true" externalURI="" /></contactDelta>`
	srv.request("NOTIFY", contactURI(contacts), "<sip:"+alice+">;tag="+tagFor(contacts.get("Call-ID")), contacts.get("From"), contacts.get("Call-ID"),
		[][2]string{{"Event", "vnd-microsoft-roaming-contacts"}, {"Subscription-State", "active;expires=3600"}, {"Content-Type", "application/vnd-microsoft-roaming-contacts+xml"}}, []byte(delta))
	srv.wait(at, step, "presence SUBSCRIBE for carol", func(m *message) bool {
		return m.isRequest() && m.method() == "SUBSCRIBE" && m.get("Event") == "presence" && strings.Contains(string(m.body)+m.start, carol)
	})

	// An IM to bob: INVITE with the first message in Ms-Text-Format, ACK,
	// typing, a second message as MESSAGE.
	at = srv.position()
	must(c.SendIM(ctx, bob, "Hello Bob, first message"))
	invite, at := srv.wait(at, step, "INVITE", isRequest("INVITE"))
	srv.wait(at, step, "ACK", isRequest("ACK"))
	must(c.Typing(ctx, bob, true))
	at = srv.position()
	srv.wait(at, step, "INFO", isRequest("INFO"))
	must(c.SendIM(ctx, bob, "<b>Second</b> message &amp; more"))
	srv.wait(at, step, "MESSAGE", isRequest("MESSAGE"))

	// bob answers inside the dialog.
	srv.request("MESSAGE", contactURI(invite), "<sip:"+bob+">;tag="+tagFor(invite.get("Call-ID")), invite.get("From"), invite.get("Call-ID"),
		[][2]string{{"Content-Type", "text/plain; charset=UTF-8"}}, []byte("Hi Alice, reply from Bob"))
	_, err := c.WaitIM(ctx, step, func(m pidginsipe.IM) bool { return strings.Contains(m.Text(), "reply from Bob") })
	must(err)

	// Closing the window ends the dialog.
	at = srv.position()
	must(c.CloseConversation(ctx, bob))
	srv.wait(at, step, "BYE", isRequest("BYE"))

	// carol starts a conversation: INVITE with her first message in
	// Ms-Text-Format; pidgin-sipe answers 200 with SDP.
	callID := strings.ToLower(random(16))
	carolTag := strings.ToLower(random(5))
	first := "Hello Alice, Carol here"
	sdp := "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=session\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=message 5061 sip null\r\na=accept-types:text/plain text/html image/gif multipart/alternative application/im-iscomposing+xml text/rtf\r\n"
	at = srv.position()
	carolFrom := `"Carol" <sip:` + carol + ">;tag=" + carolTag + ";epid=ca401e0001"
	srv.request("INVITE", selfContact(srv), carolFrom, "<sip:"+alice+">", callID,
		[][2]string{
			{"Contact", "<sip:" + carol + ";opaque=user:epid:carolepid000000000000000;gruu>"},
			{"Ms-Conversation-ID", "AdlE7pW3Ff0q1DyoS3qJcNXnGZ2o2A=="},
			{"Ms-Text-Format", "text/plain; charset=UTF-8; msgr=WAAtAE0ATQBTAC0ASQBNAC0ARgBvAHIAbQBhAHQAOgAgAEYATgA9AFMAZQBnAG8AZQAlADIAMABVAEkAOwAgAEUARgA9ADsAIABDAE8APQAwADsAIABDAFMAPQAwADsAIABQAEYAPQAwAA0ACgANAAoA;ms-body=" + b64(first)},
			{"Supported", "ms-text-format"},
			{"Supported", "ms-delayed-accept"},
			{"Content-Type", "application/sdp"},
		}, []byte(sdp))
	ok, _ := srv.wait(at, step, "200 to carol's INVITE", func(m *message) bool { return !m.isRequest() && m.method() == "INVITE" && m.status() == 200 })
	srv.request("ACK", contactURI(ok), carolFrom, ok.get("To"), callID, nil, nil)
	// A 200 without "Supported: ms-text-format" did not take the first
	// message from the INVITE (pidgin-sipe takes it only in multiparty
	// and 2005 sessions): the sender sends it again as MESSAGE.
	accepted := false
	for _, v := range ok.all("Supported") {
		accepted = accepted || strings.Contains(v, "ms-text-format")
	}
	if !accepted {
		srv.request("MESSAGE", contactURI(ok), carolFrom, ok.get("To"), callID,
			[][2]string{{"Content-Type", "text/plain; charset=UTF-8"}}, []byte(first))
	}
	_, err = c.WaitIM(ctx, step, func(m pidginsipe.IM) bool { return strings.Contains(m.Text(), "Carol here") })
	must(err)
	at = srv.position()
	srv.request("BYE", contactURI(ok), carolFrom, ok.get("To"), callID, nil, nil)
	srv.wait(at, step, "200 to BYE", func(m *message) bool { return !m.isRequest() && m.method() == "BYE" })

	// A status change is published through SERVICE.
	at = srv.position()
	must(c.SetStatus(ctx, pidginsipe.StatusAway))
	srv.wait(at, step, "SERVICE publishing away", func(m *message) bool {
		return m.isRequest() && m.method() == "SERVICE" && bytes.Contains(m.body, []byte("<availability>15500</availability>"))
	})
}

// stateCategory is a presence NOTIFY body with one aggregate state.
func stateCategory(uri string, availability int) string {
	return fmt.Sprintf(`<categories xmlns="http://schemas.microsoft.com/2006/09/sip/categories" uri="sip:%s"><category name="state" instance="0" publishTime="2026-12-02T05:00:00.000Z" container="2" version="1"><state xmlns="http://schemas.microsoft.com/2006/09/sip/state" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" manual="false" xsi:type="aggregateState"><availability>%d</availability></state></category></categories>`, uri, availability)
}

// contactURI is the URI in a message's Contact header.
func contactURI(m *message) string {
	v := m.get("Contact")
	if i, j := strings.Index(v, "<"), strings.Index(v, ">"); i >= 0 && j > i {
		return v[i+1 : j]
	}
	return strings.Split(v, ";")[0]
}

// selfContact is where pidgin-sipe registered.
func selfContact(srv *server) string {
	m, _ := srv.wait(0, step, "REGISTER", func(m *message) bool { return m.isRequest() && m.method() == "REGISTER" })
	return contactURI(m)
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// poll waits for check with a deadline.
func poll(ctx context.Context, timeout time.Duration, check func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		ok, err := check()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

var unsafeName = regexp.MustCompile(`[^a-z0-9]+`)

// name is a fixture's file name: its position, who sent it and what it is.
func name(i int, e entry) string {
	m := e.msg
	var what string
	if m.isRequest() {
		what = m.method()
		switch m.method() {
		case "SUBSCRIBE", "NOTIFY":
			what += "-" + m.get("Event")
			if m.get("Expires") == "0" && m.method() == "SUBSCRIBE" {
				what += "-expires-0"
			}
		case "SERVICE":
			for _, op := range []string{"addGroup", "setContact", "publish", "setSubscribers"} {
				if bytes.Contains(m.body, []byte(":"+op+">")) || bytes.Contains(m.body, []byte(":"+op+" ")) || bytes.Contains(m.body, []byte("<"+op)) {
					what += "-" + op
					break
				}
			}
		case "REGISTER":
			if m.get("Expires") == "0" {
				what += "-unregister"
			}
		}
	} else {
		what = fmt.Sprintf("%d-%s", m.status(), m.method())
	}
	who := "server"
	if e.fromClient {
		who = "client"
	}
	return fmt.Sprintf("%03d-%s-%s.sip", i, who, strings.Trim(unsafeName.ReplaceAllString(strings.ToLower(what), "-"), "-"))
}

// write stores every message of the exchange, one file each, the NTLM
// challenge the AUTHENTICATE answers, and the versions that made them.
func write(dir string, srv *server) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	old, _ := filepath.Glob(filepath.Join(dir, "*.sip"))
	for _, f := range old {
		_ = os.Remove(f)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	for i, e := range srv.log {
		if err := os.WriteFile(filepath.Join(dir, name(i+1, e)), e.msg.raw, 0o644); err != nil {
			return err
		}
	}
	versions, _ := exec.Command("dpkg-query", "-W", "-f", "${Package} ${Version}\n", "pidgin-sipe", "finch", "libpurple0").Output()
	meta := fmt.Sprintf("user: CONTOSO\\alice (%s)\npassword: %s\nserver: %s\nntlm-challenge: %s\n%s", alice, password, fqdn,
		strings.ToUpper(hex.EncodeToString(srv.challenge)), versions)
	return os.WriteFile(filepath.Join(dir, "recording.txt"), []byte(meta), 0o644)
}
