package rdp

import (
	"image"
	"sync"
)

// arrow is the pointer shown when the server asks for the system default:
// X is black, . is white, space is transparent.
var arrow = []string{
	"X",
	"XX",
	"X.X",
	"X..X",
	"X...X",
	"X....X",
	"X.....X",
	"X......X",
	"X.......X",
	"X........X",
	"X.....XXXXX",
	"X..X..X",
	"X.X X..X",
	"XX  X..X",
	"X    X..X",
	"     X..X",
	"      XX",
}

var defaultCursor = sync.OnceValue(func() *Cursor {
	img := image.NewRGBA(image.Rect(0, 0, 11, len(arrow)))
	for y, row := range arrow {
		for x, c := range row {
			o := img.PixOffset(x, y)
			switch c {
			case 'X':
				copy(img.Pix[o:o+4], []byte{0, 0, 0, 0xff})
			case '.':
				copy(img.Pix[o:o+4], []byte{0xff, 0xff, 0xff, 0xff})
			}
		}
	}
	return &Cursor{Image: img}
})
