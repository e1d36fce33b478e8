package rdp

import (
	"context"
	"image"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/e2e/targets"
)

func TestSmoke(t *testing.T) {
	srv := targets.NewShadowRDP(t, targets.ShadowOptions{})
	srv.Run("xsetroot", "-solid", "#336699")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	s, err := Connect(ctx, Config{Host: srv.Host, Port: srv.Port, Username: srv.User, Password: srv.Password})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t.Log("connected", time.Since(start), s.CertFingerprint())
	for {
		select {
		case <-s.Changed():
			u := s.Take()
			w, h := s.Size()
			img := s.Snapshot(image.Rect(0, 0, w, h))
			t.Log(len(u.Rects), u.Resized, u.Cursor != nil, w, h, img.RGBAAt(5, 5), time.Since(start))
			if img.RGBAAt(5, 5).B == 0x99 {
				return
			}
		case <-s.Done():
			t.Fatal(s.Err())
		case <-ctx.Done():
			t.Fatal("timeout")
		}
	}
}

func TestSmokeBadPassword(t *testing.T) {
	srv := targets.NewShadowRDP(t, targets.ShadowOptions{})
	_, err := Connect(context.Background(), Config{Host: srv.Host, Port: srv.Port, Username: srv.User, Password: "nope"})
	t.Log(err)
}
