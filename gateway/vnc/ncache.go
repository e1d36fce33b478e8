package vnc

import "image"

// x11vnc's -ncache (its banner recommends "-ncache 10") keeps a pixel
// cache below the real screen and moves windows in and out of it with
// CopyRect: for a W×H screen the framebuffer is W×(k·H), with k = n+1
// slots, or n+2 with the slot for the root window's background (on by
// default), n even and 10 when not given. Nothing in RFB marks it: the
// ServerInit, the desktop name ("host:display") and ExtendedDesktopSize's
// screen list all give the whole framebuffer. So it is recognised by its
// shape, as the SSVNC viewer does: more than twice as tall as it is wide,
// which no screen is, and a height that divides into k screens of a
// screen's proportions.

// ncacheDefaultSlots are the k of x11vnc's default cache (n = 10), with
// and without the root background's slot: tried first, with portrait
// screens too.
var ncacheDefaultSlots = []int{12, 11}

// maxNCacheSlots bounds the k tried for other values of n.
const maxNCacheSlots = 64

// minShownHeight is the least height taken for a screen above a cache.
const minShownHeight = 64

// screenRatios are the proportions (width:height) of screens: a
// framebuffer's height divides into a screen of one of them and its cache.
var screenRatios = [][2]int{{4, 3}, {5, 4}, {3, 2}, {16, 10}, {16, 9}, {5, 3}, {21, 9}, {64, 27}, {43, 18}}

// visibleArea returns the part of a w×h framebuffer to show: the screen
// above x11vnc's pixel cache when the framebuffer has its shape, else all
// of it. When several slot counts fit, x11vnc's default wins, then the
// fewest slots (the tallest screen): showing a few cache rows by mistake
// is better than hiding part of the screen. Portrait screens are taken
// only with the default: with other counts they would often also fit
// with fewer slots.
func visibleArea(w, h int) image.Rectangle {
	if h > 2*w {
		for _, k := range ncacheDefaultSlots {
			if sh := h / k; h%k == 0 && sh >= minShownHeight && (screenLike(w, sh) || screenLike(sh, w)) {
				return image.Rect(0, 0, w, sh)
			}
		}
		for k := 3; k <= maxNCacheSlots; k++ {
			if sh := h / k; h%k == 0 && sh >= minShownHeight && screenLike(w, sh) {
				return image.Rect(0, 0, w, sh)
			}
		}
	}
	return image.Rect(0, 0, w, h)
}

// screenLike reports whether w×h has a landscape screen's proportions,
// within 1 % (1366×768 is called 16:9).
func screenLike(w, h int) bool {
	for _, r := range screenRatios {
		if d := w*r[1] - h*r[0]; 100*max(d, -d) <= h*r[0] {
			return true
		}
	}
	return false
}
