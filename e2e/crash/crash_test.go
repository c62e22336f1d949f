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
	repeated := Result{SfBToMatrix: Direction{Sent: 3, Received: 3}, MatrixToSfB: Direction{Sent: 2, Received: 3, Repeated: 1}}
	assert.True(t, repeated.OK(), "a Matrix -> SfB repeat inside the duplicate window is by design")
	for _, bad := range []Result{
		{SfBToMatrix: Direction{Sent: 3, Received: 4, Repeated: 1}},
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

func TestWindowRepeats(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	kills := []time.Time{at(100), at(1000)}
	cases := []struct {
		name     string
		arrivals []arrival
		marks    map[int][]time.Time
		want     []int // indexes of the repeats
	}{
		{"killed before the mark: the repeat right after is by design",
			[]arrival{{1, at(10)}, {2, at(90)}, {2, at(400)}, {3, at(500)}},
			map[int][]time.Time{1: {at(11)}, 2: {at(401)}, 3: {at(501)}}, []int{2}},
		{"marked before the kill: the bridge knew SfB had it, a double",
			[]arrival{{1, at(10)}, {2, at(90)}, {2, at(400)}},
			map[int][]time.Time{2: {at(95), at(401)}}, nil},
		{"no kill between the copies: a double",
			[]arrival{{1, at(10)}, {1, at(20)}},
			nil, nil},
		{"not adjacent: a later message came between, a double",
			[]arrival{{1, at(90)}, {2, at(300)}, {1, at(400)}},
			nil, nil},
		{"a third copy is a double",
			[]arrival{{1, at(90)}, {1, at(400)}, {1, at(1200)}},
			nil, []int{1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got []int
			for i := range tc.arrivals {
				if windowRepeats(tc.arrivals, tc.marks, kills)[i] {
					got = append(got, i)
				}
			}
			assert.Equal(t, tc.want, got)
		})
	}
}

// The window of a repeated message is measured from the copy its mark is
// for, not from the first copy, which the killed bridge never marked.
func TestMarkDelay(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	d, ok := markDelay([]time.Time{at(10)}, []time.Time{at(13)})
	assert.True(t, ok)
	assert.Equal(t, 3*time.Millisecond, d)
	d, ok = markDelay([]time.Time{at(10), at(1600)}, []time.Time{at(1605)})
	assert.True(t, ok)
	assert.Equal(t, 5*time.Millisecond, d)
	_, ok = markDelay([]time.Time{at(10)}, nil)
	assert.False(t, ok, "never marked")
	_, ok = markDelay(nil, []time.Time{at(10)})
	assert.False(t, ok, "never arrived")
}
