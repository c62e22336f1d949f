//go:build race

package main

// raceEnabled makes the bridge the smoke test builds carry the race
// detector when the test itself does (as the e2e tests do: one build).
const raceEnabled = true
