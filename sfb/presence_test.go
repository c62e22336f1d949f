package sfb

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestPresenceSame(t *testing.T) {
	a := Presence{Availability: AvailabilityBusy, Note: "n", OutOfOffice: &OutOfOffice{Message: "away"}, Changed: time.Unix(1, 0), LastActive: time.Unix(2, 0)}
	b := a
	b.Changed, b.LastActive = time.Unix(3, 0), time.Unix(4, 0)
	b.OutOfOffice = &OutOfOffice{Message: "away"}
	assert.True(t, a.Same(b), "times and pointers do not count")
	b.OutOfOffice = &OutOfOffice{Message: "back monday"}
	assert.False(t, a.Same(b))
	b.OutOfOffice = nil
	assert.False(t, a.Same(b))
	b = a
	b.Activity = ActivityInAMeeting
	assert.False(t, a.Same(b))
}

func TestCleanText(t *testing.T) {
	got, ok := CleanText("  Lunch\x07 at\nnoon \xff ", 100)
	assert.Equal(t, "Lunch at\nnoon", got)
	assert.False(t, ok)
	got, ok = CleanText(" fine ", 100)
	assert.Equal(t, "fine", got)
	assert.True(t, ok)
	got, ok = CleanText(strings.Repeat("é", 10), 4)
	assert.Equal(t, "éééé", got)
	assert.False(t, ok)
}
