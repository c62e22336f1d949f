// Command sfb-matrix-bridge bridges Skype for Business and Matrix.
package main

import "github.com/sfb-matrix-bridge/sfb-matrix-bridge/matrixapp"

// Filled by the linker: -ldflags "-X main.Tag=$(git describe --exact-match --tags) -X main.Commit=$(git rev-parse HEAD) -X 'main.BuildTime=$(date -Iseconds)'".
var (
	Tag       = ""
	Commit    = "unknown"
	BuildTime = "unknown"
)

func main() {
	matrixapp.Main(matrixapp.BuildInfo{Tag: Tag, Commit: Commit, BuildTime: BuildTime})
}
