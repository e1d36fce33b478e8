// Package logctx carries log attributes in a context: a request's id, a
// session's id. A logger whose handler is wrapped by Handler adds them to
// every record logged with that context (Logger.InfoContext and the like).
package logctx

import (
	"context"
	"log/slog"
)

type key struct{}

// With returns ctx carrying args (key, value pairs or slog.Attr, as
// slog.Logger.With takes them) after those ctx already carries.
func With(ctx context.Context, args ...any) context.Context {
	r := slog.Record{}
	r.Add(args...)
	attrs := append([]slog.Attr(nil), Attrs(ctx)...)
	r.Attrs(func(a slog.Attr) bool {
		attrs = append(attrs, a)
		return true
	})
	return context.WithValue(ctx, key{}, attrs)
}

// Copy returns dst carrying the attributes src carries: a session that
// outlives its request keeps the request's id.
func Copy(dst, src context.Context) context.Context {
	attrs := Attrs(src)
	if len(attrs) == 0 {
		return dst
	}
	return context.WithValue(dst, key{}, append(append([]slog.Attr(nil), Attrs(dst)...), attrs...))
}

// Logger returns l with the attributes ctx carries, for code that logs
// without a context.
func Logger(ctx context.Context, l *slog.Logger) *slog.Logger {
	attrs := Attrs(ctx)
	if len(attrs) == 0 {
		return l
	}
	args := make([]any, len(attrs))
	for i, a := range attrs {
		args[i] = a
	}
	return l.With(args...)
}

// Attrs returns the attributes ctx carries.
func Attrs(ctx context.Context) []slog.Attr {
	if ctx == nil {
		return nil
	}
	a, _ := ctx.Value(key{}).([]slog.Attr)
	return a
}

// Handler wraps h to add the attributes of each record's context.
func Handler(h slog.Handler) slog.Handler { return handler{h} }

type handler struct{ slog.Handler }

func (h handler) Handle(ctx context.Context, r slog.Record) error {
	if attrs := Attrs(ctx); len(attrs) > 0 {
		r = r.Clone()
		r.AddAttrs(attrs...)
	}
	return h.Handler.Handle(ctx, r)
}

func (h handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return handler{h.Handler.WithAttrs(attrs)}
}

func (h handler) WithGroup(name string) slog.Handler { return handler{h.Handler.WithGroup(name)} }
