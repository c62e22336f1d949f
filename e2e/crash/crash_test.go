package crash

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestTally(t *testing.T) {
	cases := []struct {
		name string
		sent int
		got  []int
		want Direction
		n    int // problems described
	}{
		{"exactly once in order", 4, []int{1, 2, 3, 4, endSeq}, Direction{Sent: 4, Received: 4}, 0},
		{"nothing sent", 0, []int{endSeq}, Direction{}, 0},
		{"lost", 4, []int{1, 3, 4}, Direction{Sent: 4, Received: 3, Lost: 1}, 1},
		{"doubled adjacent", 3, []int{1, 2, 2, 3}, Direction{Sent: 3, Received: 4, Doubled: 1}, 1},
		{"doubled later", 3, []int{1, 2, 3, 1}, Direction{Sent: 3, Received: 4, Doubled: 1}, 1},
		{"out of order", 4, []int{1, 3, 2, 4}, Direction{Sent: 4, Received: 4, OutOfOrder: 1}, 1},
		{"unexpected", 2, []int{1, 2, 7}, Direction{Sent: 2, Received: 3}, 1},
		{"all lost", 2, nil, Direction{Sent: 2, Lost: 2}, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, problems := tally(tc.sent, tc.got)
			assert.Equal(t, tc.want, got)
			assert.Len(t, problems, tc.n, "%q", problems)
		})
	}
}

func TestResultOK(t *testing.T) {
	ok := Result{SfBToMatrix: Direction{Sent: 3, Received: 3}, MatrixToSfB: Direction{Sent: 2, Received: 2}}
	assert.True(t, ok.OK())
	for _, bad := range []Result{
		{SfBToMatrix: Direction{Sent: 3, Received: 2, Lost: 1}},
		{MatrixToSfB: Direction{Sent: 2, Received: 3, Doubled: 1}},
		{MatrixToSfB: Direction{Sent: 2, Received: 2, OutOfOrder: 1}},
		// Received counts copies of unexpected messages too.
		{SfBToMatrix: Direction{Sent: 2, Received: 3}},
	} {
		assert.False(t, bad.OK(), "%+v", bad)
	}
}

func TestParseSeq(t *testing.T) {
	seq, ok := parseSeq(s2mText(3, 42), "s2m", 3)
	assert.True(t, ok)
	assert.Equal(t, 42, seq)
	_, ok = parseSeq(s2mText(3, 42), "m2s", 3)
	assert.False(t, ok, "other direction")
	_, ok = parseSeq(s2mText(4, 42), "s2m", 3)
	assert.False(t, ok, "other conversation")
	_, ok = parseSeq("hello crash03", "s2m", 3)
	assert.False(t, ok)
}

func TestNewWindow(t *testing.T) {
	assert.Equal(t, Window{}, newWindow(nil))
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	w := newWindow(ds)
	assert.Equal(t, 100, w.Count)
	assert.Equal(t, 51*time.Millisecond, w.P50)
	assert.Equal(t, 96*time.Millisecond, w.P95)
	assert.Equal(t, 100*time.Millisecond, w.Max)
}
