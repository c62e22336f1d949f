package sfb

// Observer is told how the SfB server answers, for the bridge's metrics.
// A transport calls it from many goroutines and for every request, so it
// must be quick and must not block. Nothing it is given names a person.
type Observer interface {
	// ServerAnswered: a request got status (0: no answer at all) with
	// the X-Ms-Diagnostics header diagnostics ("" when absent).
	ServerAnswered(status int, diagnostics string)
	// EventChannelReconnect: a user's event channel failed and is asked
	// again.
	EventChannelReconnect()
	// TokenRenewed: an unattended token renewal ended with err.
	TokenRenewed(err error)
}

// NopObserver observes nothing.
type NopObserver struct{}

func (NopObserver) ServerAnswered(int, string) {}
func (NopObserver) EventChannelReconnect()     {}
func (NopObserver) TokenRenewed(error)         {}
