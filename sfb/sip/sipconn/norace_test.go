//go:build !race

package sipconn

const raceEnabled = false
