package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/e2e/crash"
)

// runCrash is the crash scenario (e2e/crash, with its own Synapse,
// PostgreSQL, simulator and bridge): n messages both ways over
// opts.crashConvs conversations while the bridge is killed
// (SIGKILL) opts.kills times at random moments, then every message
// counted.
func runCrash(ctx context.Context, opts options, n int, out io.Writer) (crash.Result, error) {
	return crash.Run(ctx, crash.Options{
		Kills:         opts.kills,
		Messages:      n,
		Conversations: opts.crashConvs,
		RepoRoot:      opts.repoRoot,
		BridgeBinary:  opts.bridgeBin,
		Race:          opts.race,
		Logf: func(format string, args ...any) {
			fmt.Fprintf(out, format+"\n", args...)
		},
	})
}

func crashMarkdown(b *strings.Builder, c *crash.Result) {
	fmt.Fprintf(b, "%d conversations, %d kills, seed %d; setup %s, messages to count %s.\n\n",
		c.Conversations, c.Kills, c.Seed, c.Setup.Round(time.Second), c.Duration.Round(time.Second))
	b.WriteString("| direction | sent | received | lost | doubled | out of order | repeated in the window |\n|---|---:|---:|---:|---:|---:|---:|\n")
	for _, d := range []struct {
		name string
		d    crash.Direction
	}{{"SfB -> Matrix", c.SfBToMatrix}, {"Matrix -> SfB", c.MatrixToSfB}} {
		fmt.Fprintf(b, "| %s | %d | %d | %d | %d | %d | %d |\n", d.name, d.d.Sent, d.d.Received, d.d.Lost, d.d.Doubled, d.d.OutOfOrder, d.d.Repeated)
	}
	w := c.DuplicateWindow
	fmt.Fprintf(b, "\nMatrix -> SfB duplicate window (SfB accepted a message, the outbox not yet marked it): %d messages, p50 %s, p95 %s, max %s.\n",
		w.Count, w.P50.Round(100*time.Microsecond), w.P95.Round(100*time.Microsecond), w.Max.Round(time.Millisecond))
	switch {
	case c.OK() && c.MatrixToSfB.Repeated > 0:
		b.WriteString("\nEvery message arrived, in order; exactly once but for the Matrix -> SfB messages repeated after a kill inside the duplicate window.\n")
	case c.OK():
		b.WriteString("\nEvery message arrived exactly once, in order.\n")
	}
	for _, p := range c.Problems {
		fmt.Fprintf(b, "\n- %s", p)
	}
}
