package synapse

import "os"

// Wanted reports whether tests that need a real Synapse (and the other
// heavy end-to-end pieces) should run, and why not when they should not.
// They run when SFB_E2E=1, when CI is set (then a failure to start Synapse
// fails the run instead of skipping), or when SFB_SYNAPSE_VENV points at an
// installed virtualenv.
func Wanted() (bool, string) {
	if Required() || os.Getenv("SFB_E2E") == "1" || os.Getenv("SFB_SYNAPSE_VENV") != "" {
		return true, ""
	}
	return false, "needs a Synapse virtualenv: set SFB_E2E=1 (installs it through scripts/synapse-venv.sh) or run make test"
}

// Required reports whether end-to-end infrastructure must work: in CI a
// homeserver that cannot start is a failure, never a skip.
func Required() bool {
	return os.Getenv("CI") != "" && os.Getenv("CI") != "false"
}
