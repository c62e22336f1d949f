//go:build race

package sipconn

// The race detector grows goroutine stacks and heap objects.
const raceEnabled = true
