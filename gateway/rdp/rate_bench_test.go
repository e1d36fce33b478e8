package rdp

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/e2e/targets"
)

// BenchmarkServerUpdates measures what each RDP server test target
// delivers to this client while an xterm covering its 1920x1080 screen
// scrolls random text: updates (paints) a second, changed megapixels a
// second, and this process's CPU (FreeRDP decoding and the copy out). It
// tells how many full-screen frames a second the server can feed the
// display pipeline at all:
//
//	go test -run '^$' -bench ServerUpdates -benchtime 1x ./gateway/rdp
func BenchmarkServerUpdates(b *testing.B) {
	b.Run("shadow", func(b *testing.B) {
		srv := targets.NewShadowRDP(b, targets.ShadowOptions{Width: 1920, Height: 1080})
		s := connect(b, Config{Host: srv.Host, Port: srv.Port, Username: srv.User, Password: srv.Password, Width: 1920, Height: 1080})
		measureUpdates(b, s, &srv.Display)
	})
	b.Run("xrdp", func(b *testing.B) {
		srv := targets.NewXRDP(b, targets.XRDPOptions{})
		s := connect(b, Config{Port: srv.Port, Username: srv.User, Password: srv.Password, Width: 1920, Height: 1080})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		d, err := srv.Session(ctx)
		if err != nil {
			b.Fatal(err)
		}
		measureUpdates(b, s, d)
	})
}

func measureUpdates(b *testing.B, s *Session, d *targets.Display) {
	// 320x83 characters of the default 6x13 font fill the screen.
	if _, err := d.Start("xterm", "-geometry", "320x83+0+0", "+sb", "-e", "od", "-An", "-tx1", "-w106", "-v", "/dev/urandom"); err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for d.Viewable("XTerm") == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond) // polls X, which has no event to await here
	}
	time.Sleep(time.Second) // past the first full screens
	var updates, area int
	var cpu time.Duration
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		s.Take()
		c0 := cpuTime()
		end := time.After(4 * time.Second)
	loop:
		for {
			select {
			case <-s.Changed():
				u := s.Take()
				updates++
				for _, r := range u.Rects {
					area += r.Dx() * r.Dy()
				}
			case <-s.Done():
				b.Fatalf("session ended: %v", s.Err())
			case <-end:
				break loop
			}
		}
		cpu += cpuTime() - c0
	}
	secs := time.Since(start).Seconds()
	b.ReportMetric(float64(updates)/secs, "updates/s")
	b.ReportMetric(float64(area)/secs/1e6, "Mpx/s")
	b.ReportMetric(cpu.Seconds()/secs, "cores")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
