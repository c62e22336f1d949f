//go:build race

package e2e

// raceEnabled makes the bridge binary under test carry the race detector
// when the tests themselves do.
const raceEnabled = true
