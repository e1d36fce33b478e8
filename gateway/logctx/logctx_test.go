package logctx

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"
)

func TestHandlerAddsContextAttrs(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := slog.New(Handler(slog.NewJSONHandler(&buf, nil))).With("component", "test")
	ctx := With(context.Background(), "request", "r1")
	ctx = With(ctx, slog.String("session", "s1"))
	log.InfoContext(ctx, "hello", "n", 1)
	log.Info("no context")
	dec := json.NewDecoder(&buf)
	var first, second map[string]any
	if err := dec.Decode(&first); err != nil {
		t.Fatal(err)
	}
	if err := dec.Decode(&second); err != nil {
		t.Fatal(err)
	}
	if first["request"] != "r1" || first["session"] != "s1" || first["component"] != "test" || first["n"] != 1.0 {
		t.Errorf("with context: %v", first)
	}
	if _, ok := second["request"]; ok {
		t.Errorf("without context: %v", second)
	}
	// With does not change the context it was given.
	if len(Attrs(With(context.Background(), "a", 1))) != 1 || len(Attrs(context.Background())) != 0 {
		t.Error("With leaked attributes")
	}
}
