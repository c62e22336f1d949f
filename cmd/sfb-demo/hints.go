package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"syscall"
)

// checkPort fails at once, with what to do instead, when the homeserver's
// port is taken: Synapse would find out only after its start-up, which
// takes many seconds, and say it in its own log.
func checkPort(port int) error {
	if port == 0 {
		return nil
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("port %d is already in use (another homeserver or demo?); "+
			"run the demo on any free port with: make demo DEMOFLAGS=-port=0 "+
			"(or bin/sfb-demo -port 0)", port)
	}
	if err != nil {
		return fmt.Errorf("check port %d for the homeserver: %w", port, err)
	}
	return l.Close()
}

// controlExample is a request to the simulator's control API that makes
// the colleague send an IM to the demo user: what the demo prints so that
// its user can act as the SfB side.
type controlExample struct {
	URL  string
	Body string
}

func newControlExample(simURL string) controlExample {
	body, _ := json.Marshal(map[string]string{"to": demoSfB.String(), "text": "Hello from Skype for Business"})
	return controlExample{
		URL:  simURL + "/sim/v1/users/" + colleagueSfB.Address() + "/messages",
		Body: string(body),
	}
}

// curl is the example as a command to copy.
func (c controlExample) curl() string {
	return fmt.Sprintf("curl -X POST -H 'Content-Type: application/json' \\\n      -d '%s' \\\n      %s", c.Body, c.URL)
}
