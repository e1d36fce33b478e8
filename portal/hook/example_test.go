package hook_test

import (
	"context"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net/http/httptest"

	"github.com/keyway-dev/keyway/e2e/hookexample/examplehook"
	"github.com/keyway-dev/keyway/portal/hook"
)

// The session-start path asks the hook about each connection and follows
// its Result: Reason goes on the audit event, Message to the user.
func ExampleHook_Authorize() {
	srv := httptest.NewTLSServer(examplehook.New(examplehook.Config{
		Secret: "0123456789abcdef-example", Users: []string{"alice"},
		Posture: "managed-device", Log: slog.New(slog.DiscardHandler),
	}))
	defer srv.Close()

	h := hook.New()
	defer h.Close()
	err := h.Configure(hook.Config{
		Enabled:  true,
		URL:      srv.URL,
		CABundle: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})),
		Secret:   "0123456789abcdef-example",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, user := range []string{"alice", "mallory"} {
		res := h.Authorize(context.Background(), hook.Request{ConnectionID: "c-" + user, Username: user, Protocol: "ssh"})
		fmt.Printf("%s: allowed=%t reason=%q message=%q posture=%v\n", user, res.Allowed, res.Reason, res.Message, res.Posture)
	}
	// Output:
	// alice: allowed=true reason="" message="" posture=[managed-device]
	// mallory: allowed=false reason="client-connect-failed" message="User mallory may not connect through Keyway." posture=[managed-device]
}
