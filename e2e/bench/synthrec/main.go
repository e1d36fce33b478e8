// Command synthrec writes a long desktop recording into a gateway spool,
// as the gateway would have recorded it, for the seek benchmark: a
// 1920×1080 desktop with a terminal where a person types commands at a
// human pace and their output scrolls, a clock that ticks every second,
// and now and then a window that opens and closes. The screen goes
// through the gateway's own display pipeline (screen diff, copy for
// scrolling, images, key frames), only the clock is simulated, so an hour
// takes a minute or so to write.
//
//	go run ./e2e/bench/synthrec -spool DIR -session ID -minutes 60
package main

import (
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"io"
	"log"
	"math/rand/v2"
	"time"

	"github.com/keyway-dev/keyway/gateway/display"
	"github.com/keyway-dev/keyway/gateway/spool"
	"github.com/keyway-dev/keyway/recordings/guacrec"
)

// screen is the synthetic desktop's framebuffer.
type screen struct{ *image.RGBA }

func (s screen) ReadRegion(dst *image.RGBA, r image.Rectangle) {
	draw.Draw(dst, r, s.RGBA, r.Min, draw.Src)
}

// Terminal geometry: 8×16 character cells.
const (
	cellW, cellH = 8, 16
	termX, termY = 40, 40
	cols, rows   = 200, 58
	frameEvery   = 100 * time.Millisecond // the pace frames are sent at when something changed
)

var (
	background = color.RGBA{0x33, 0x66, 0x99, 255}
	termBG     = color.RGBA{0x10, 0x10, 0x10, 255}
	glyphFG    = []color.RGBA{{0xe0, 0xe0, 0xe0, 255}, {0x80, 0xe0, 0x80, 255}, {0x80, 0xa0, 0xff, 255}}
)

type desktop struct {
	fb      screen
	rng     *rand.Rand
	row     int // the terminal's cursor row and column
	col     int
	changed []image.Rectangle
}

// glyph draws a character-like shape in cell (c, r).
func (d *desktop) glyph(c, r int, fg color.RGBA) {
	x, y := termX+c*cellW, termY+r*cellH
	cell := image.Rect(x, y, x+cellW, y+cellH)
	draw.Draw(d.fb, cell, image.NewUniform(termBG), image.Point{}, draw.Src)
	shape := d.rng.IntN(1 << 12)
	for i := range 12 {
		if shape&(1<<i) != 0 {
			gx, gy := x+1+(i%3)*2, y+3+(i/3)*2
			draw.Draw(d.fb, image.Rect(gx, gy, gx+2, gy+2), image.NewUniform(fg), image.Point{}, draw.Src)
		}
	}
	d.changed = append(d.changed, cell)
}

// newline moves to the next row, scrolling the terminal at the bottom.
func (d *desktop) newline() {
	d.col = 0
	if d.row < rows-1 {
		d.row++
		return
	}
	term := image.Rect(termX, termY, termX+cols*cellW, termY+rows*cellH)
	draw.Draw(d.fb, image.Rect(termX, termY, term.Max.X, term.Max.Y-cellH), d.fb, image.Pt(termX, termY+cellH), draw.Src)
	draw.Draw(d.fb, image.Rect(termX, term.Max.Y-cellH, term.Max.X, term.Max.Y), image.NewUniform(termBG), image.Point{}, draw.Src)
	d.changed = append(d.changed, term)
}

func (d *desktop) clock(t time.Time) {
	r := image.Rect(1920-120, 8, 1920-8, 24)
	draw.Draw(d.fb, r, image.NewUniform(background), image.Point{}, draw.Src)
	s := t.Second()
	for i := range 8 {
		if (s>>i)&1 != 0 || i == t.Minute()%8 {
			draw.Draw(d.fb, image.Rect(r.Min.X+i*14, 10, r.Min.X+i*14+10, 22), image.NewUniform(glyphFG[0]), image.Point{}, draw.Src)
		}
	}
	d.changed = append(d.changed, r)
}

// window opens (or closes, painting the background) a dialog.
func (d *desktop) window(open bool) {
	r := image.Rect(1300, 300, 1800, 700)
	c := background
	if open {
		c = color.RGBA{0xdd, 0xdd, 0xdd, 255}
	}
	draw.Draw(d.fb, r, image.NewUniform(c), image.Point{}, draw.Src)
	if open {
		draw.Draw(d.fb, image.Rect(r.Min.X, r.Min.Y, r.Max.X, r.Min.Y+24), image.NewUniform(color.RGBA{0x30, 0x50, 0x90, 255}), image.Point{}, draw.Src)
	}
	d.changed = append(d.changed, r)
}

func main() {
	dir := flag.String("spool", "", "gateway spool directory")
	session := flag.String("session", "synthetic-hour", "session ID")
	minutes := flag.Int("minutes", 60, "length of the recording")
	keyFrames := flag.Duration("keyframes", display.DefaultKeyFrameInterval, "least time between key frames")
	flag.Parse()
	if *dir == "" {
		log.Fatal("give -spool")
	}
	start := time.Now().Add(-time.Duration(*minutes) * time.Minute).Truncate(time.Second)
	now := start
	clock := func() time.Time { return now }
	sp, err := spool.Open(spool.Config{Dir: *dir, Now: clock})
	if err != nil {
		log.Fatal(err)
	}
	defer sp.Close()
	rec, err := sp.Create(spool.Meta{SessionID: *session, User: "demo", Resource: "demo-vnc", Protocol: "vnc",
		Gateway: "embedded", ClientAddr: "127.0.0.1", Format: spool.Guacamole})
	if err != nil {
		log.Fatal(err)
	}
	w, err := guacrec.NewWriter(rec, rec.Index())
	if err != nil {
		log.Fatal(err)
	}
	r := display.NewRecording(w, *keyFrames, true, clock)
	enc := display.NewEncoder(r.Writer(io.Discard))
	enc.SetIndexed(true)
	scr := display.NewScreen(enc)
	d := &desktop{fb: screen{image.NewRGBA(image.Rect(0, 0, 1920, 1080))}, rng: rand.New(rand.NewPCG(1, 2))}
	draw.Draw(d.fb, d.fb.Bounds(), image.NewUniform(background), image.Point{}, draw.Src)
	draw.Draw(d.fb, image.Rect(termX, termY, termX+cols*cellW, termY+rows*cellH), image.NewUniform(termBG), image.Point{}, draw.Src)
	if err := scr.Resize(1920, 1080); err != nil {
		log.Fatal(err)
	}
	d.changed = []image.Rectangle{d.fb.Bounds()}

	end := start.Add(time.Duration(*minutes) * time.Minute)
	// A person's rhythm: type a command (5 characters a second), its
	// output scrolls (a burst of lines, 30 a second), think for a while.
	var typing, output int
	think := 0
	lastSecond := -1
	frames := 0
	for ; now.Before(end); now = now.Add(frameEvery) {
		switch {
		case typing > 0:
			if d.rng.IntN(2) == 0 { // 5 a second at 10 frames a second
				d.glyph(d.col, d.row, glyphFG[0])
				d.col++
				typing--
				if typing == 0 {
					d.newline()
					output = d.rng.IntN(80) + 1
				}
			}
		case output > 0:
			for range 3 {
				if output == 0 {
					break
				}
				n := d.rng.IntN(cols-20) + 10
				fg := glyphFG[d.rng.IntN(len(glyphFG))]
				for c := range n {
					d.glyph(c, d.row, fg)
				}
				d.newline()
				output--
			}
		case think > 0:
			think--
		default:
			typing = d.rng.IntN(30) + 5
			think = d.rng.IntN(100) // up to 10 s
			if d.rng.IntN(10) == 0 {
				d.window(d.rng.IntN(2) == 0)
			}
		}
		if s := now.Second(); s != lastSecond {
			lastSecond = s
			d.clock(now)
		}
		if len(d.changed) == 0 {
			continue
		}
		if err := scr.Update(d.fb, d.changed); err != nil {
			log.Fatal(err)
		}
		d.changed = d.changed[:0]
		ts := now.UnixMilli()
		if err := enc.Sync(ts); err != nil {
			log.Fatal(err)
		}
		if err := enc.Flush(); err != nil {
			log.Fatal(err)
		}
		if err := r.FrameEnd(scr, ts); err != nil {
			log.Fatal(err)
		}
		frames++
	}
	m, err := rec.Finish()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: %d frames, %d bytes (%.1f MB), %v\n", m.SessionID, frames, m.Size, float64(m.Size)/1e6, m.End.Sub(m.Start))
}
