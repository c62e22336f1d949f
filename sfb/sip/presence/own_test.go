package presence

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestOwnPublications(t *testing.T) {
	// pidgin-sipe's example machine state instance, 926460663, comes from
	// an epid starting 738aaf7.
	assert.Equal(t, uint32(926460663), MachineStateInstance("738aaf7c5e"))

	// The versions a roaming-self document names are what the next
	// publication carries; what we write is pidgin-sipe's publication.
	self, err := ParseRoamingSelf([]byte(msPresRoamingSelf))
	require.NoError(t, err)
	v := Versions{}
	v.Learn(self.Categories)
	// The example names container 2 of the user state; 3 and the machine
	// state are as pidgin-sipe's example publication has them.
	v[Key{"state", InstanceUserState, 3}] = 7
	v[Key{"state", 926460663, 2}], v[Key{"state", 926460663, 3}] = 22, 22
	pub := Publish{URI: "sip:alice@contoso.com"}
	pub.Publications = append(pub.Publications, v.UserState(6500)...)
	pub.Publications = append(pub.Publications, v.MachineState(926460663, MachineActive)[:1]...)
	pub.Publications = append(pub.Publications, v.Note("")[0])
	want, err := ParsePublish([]byte(sipePublish))
	require.NoError(t, err)
	assert.Equal(t, want, pub)
	assert.Contains(t, string(pub.Marshal()), `<publication categoryName="note" instance="0" container="200" version="4" expireType="static" expires="0"/>`)

	// A 409 names the publications by index: their versions are the
	// server's, the others stay.
	f, err := ParseFault([]byte(strings.Replace(msPresFault, `index="1" version="1" curVersion="2"`, `index="2" version="7" curVersion="9"`, 1)))
	require.NoError(t, err)
	assert.True(t, v.Conflict(pub, f))
	assert.Equal(t, uint32(9), v[Key{"state", InstanceUserState, 3}])
	assert.Equal(t, uint32(7), v[Key{"state", InstanceUserState, 2}])
	assert.False(t, v.Conflict(pub, Fault{Code: FaultWrongDelta, Operations: []FaultOperation{{Index: 9, CurVersion: 1}}}))

	// Taken: one version up; a removed instance is forgotten.
	v.Published(pub)
	assert.Equal(t, uint32(8), v[Key{"state", InstanceUserState, 2}])
	assert.Equal(t, uint32(23), v[Key{"state", 926460663, 2}])
	_, ok := v[Key{"note", 0, 200}]
	assert.False(t, ok)
	notes := v.Note("Lunch")
	require.Len(t, notes, 3)
	assert.Equal(t, []int{200, 300, 400}, []int{notes[0].Container, notes[1].Container, notes[2].Container})
	assert.Equal(t, &Note{Type: NotePersonal, Text: "Lunch"}, notes[0].Note)
	assert.Nil(t, notes[0].Expires)
}
