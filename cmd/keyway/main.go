// Command keyway is the native client of the Keyway portal.
//
// This is a placeholder so that `make build` can build the client
// downloads on this branch; the cli branch's cmd/keyway replaces it.
package main

import (
	"fmt"
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

func main() {
	v := version
	if v == "" {
		v = "dev"
	}
	fmt.Fprintln(os.Stdout, "keyway", v)
}
