package pidginsipe

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// dbus-send's and dbus-monitor's output, as Debian 12's print it: strings
// are not escaped, so one may hold quotes and span lines.
func TestParseArgs(t *testing.T) {
	assert.Equal(t, []string{"82"}, parseArgs("   int32 82\n"))
	assert.Equal(t, []string{"82", "91"}, parseArgs("   array [\n      int32 82\n      int32 91\n   ]\n"))
	assert.Equal(t, []string{"available"}, parseArgs(`   string "available"`+"\n"))
	assert.Equal(t, []string{""}, parseArgs(`   string ""`))
	assert.Equal(t,
		[]string{"87", "sip:bob@contoso.com", "say \"hi\"\nand <b>bye</b>", "206", "2"},
		parseArgs("   int32 87\n   string \"sip:bob@contoso.com\"\n   string \"say \"hi\"\nand <b>bye</b>\"\n   int32 206\n   uint32 2\n"))
}

// A received IM is taken as soon as its last argument is printed, not when
// the next signal comes; other signals are ignored.
func TestReadSignals(t *testing.T) {
	c := &Client{news: make(chan struct{}, 1)}
	out := strings.Join([]string{
		"signal time=1.1 sender=org.freedesktop.DBus -> destination=:1.0 serial=2 path=/org/freedesktop/DBus; interface=org.freedesktop.DBus; member=NameAcquired",
		`   string ":1.0"`,
		"signal time=1.6 sender=:1.2 -> destination=(null destination) serial=165 path=/im/pidgin/purple/PurpleObject; interface=im.pidgin.purple.PurpleInterface; member=ReceivedImMsg",
		"   int32 87",
		`   string "sip:bob@contoso.com"`,
		`   string "Hi <b>Alice</b> &amp; co`,
		`second line"`,
		"   int32 206",
		"   uint32 2",
		"",
	}, "\n")
	c.readSignals(strings.NewReader(out))
	ims := c.IMs()
	require.Len(t, ims, 1)
	assert.Equal(t, "sip:bob@contoso.com", ims[0].From)
	assert.Equal(t, "Hi Alice & co\nsecond line", ims[0].Text())
	select {
	case <-c.news:
	default:
		t.Fatal("no news of the IM")
	}
}
