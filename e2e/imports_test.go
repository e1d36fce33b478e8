// Package e2e holds the end-to-end tests (Playwright, in *.test.mjs) and the
// Go harness for real target servers (package targets). This file checks
// the import rules of STYLE.md for the whole module.
package e2e

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/keyway-dev/keyway"

// TestImports enforces the direction of imports between the parts: the
// gateway never depends on the portal or the web UI, the portal reaches the
// gateway only through its wire protocol, and the shared codecs stay on the
// standard library.
func TestImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	type pkg struct {
		ImportPath string
		Imports    []string
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	var pkgs []pkg
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 5 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	local := func(p string) (string, bool) { return strings.CutPrefix(p, module+"/") }
	for _, p := range pkgs {
		from, _ := local(p.ImportPath)
		for _, imp := range p.Imports {
			to, ok := local(imp)
			if !ok {
				// Third-party imports: the shared codecs use the standard library only.
				if isSharedCodec(from) && strings.Contains(strings.Split(imp, "/")[0], ".") {
					t.Errorf("%s imports %s: shared codecs use the standard library only", from, imp)
				}
				continue
			}
			if err := allowed(from, to); err != "" {
				t.Errorf("%s imports %s: %s", from, to, err)
			}
		}
	}
}

func isSharedCodec(p string) bool {
	return strings.HasPrefix(p, "recordings") || p == "gateway/wire" || p == "gateway/guac" || p == "gateway/splice" || p == "gateway/tlsconf"
}

// isSharedWithPortal: besides the shared codecs, the portal and the
// gateway share their metrics definitions and log context, which may use
// third-party libraries (Prometheus) but no gateway engine.
func isSharedWithPortal(p string) bool {
	return isSharedCodec(p) || p == "gateway/metrics" || p == "gateway/logctx"
}

// sameCommand reports whether from and to are in one command's tree
// (cmd/keyway and cmd/keyway/internal/app).
func sameCommand(from, to string) bool {
	f, t := strings.Split(from, "/"), strings.Split(to, "/")
	return len(f) >= 2 && len(t) >= 2 && f[0] == "cmd" && f[0] == t[0] && f[1] == t[1]
}

func under(p, root string) bool { return p == root || strings.HasPrefix(p, root+"/") }

func allowed(from, to string) string {
	switch {
	case under(to, "cmd") && !sameCommand(from, to):
		return "nothing imports cmd, but a command its own packages"
	case under(from, "gateway") && (under(to, "portal") || under(to, "web")):
		return "the gateway never depends on the portal or the web UI"
	case under(from, "portal") && under(to, "gateway") && !isSharedWithPortal(to):
		return "the portal reaches gateways only through gateway/wire and gateway/guac (and copies streams with gateway/splice, shares TLS settings with gateway/tlsconf, metrics with gateway/metrics and log context with gateway/logctx)"
	case isSharedWithPortal(from) && under(to, "gateway") && !isSharedWithPortal(to):
		return "what the portal shares with the gateway imports no gateway engine"
	case isSharedCodec(from) && !isSharedCodec(to):
		return "shared codecs import only the standard library and each other"
	case from == "web/ui" && under(to, "portal"):
		return "web/ui takes plain view structs, never store rows"
	case under(from, "portal/store") && under(to, "portal") && !under(to, "portal/store"):
		return "store sits at the bottom of the portal"
	}
	return ""
}
