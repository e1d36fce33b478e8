package sessions

import (
	"strconv"

	"github.com/keyway-dev/keyway/gateway/wire"
	"github.com/keyway-dev/keyway/portal/store"
)

// KeyboardLayouts are the keyboard layouts an RDP resource can have, by
// the name the form and API use, as Windows layout ids. With US the
// gateway types with scan codes; with the others characters go as
// Unicode, so text is right whatever keys the layout has.
var KeyboardLayouts = map[string]uint32{
	"en-us": 0x0409, "en-gb": 0x0809, "de-de": 0x0407, "de-ch": 0x0807, "fr-fr": 0x040C, "fr-ch": 0x100C,
	"es-es": 0x040A, "it-it": 0x0410, "pt-br": 0x0416, "sv-se": 0x041D, "nl-nl": 0x0413, "ja-jp": 0x0411,
}

// Recording is what the gateway is asked to record of a session on a
// resource with options o: nil when recording is off.
func Recording(o store.Options) *wire.Recording {
	mode := o.RecordingMode()
	if mode == store.RecordingOff {
		return nil
	}
	return &wire.Recording{Required: mode == store.RecordingRequired, Input: o.RecordInput}
}

// DesktopRequest turns a resource's options into a desktop session's. For
// RDP, a resource without a fixed size takes the browser window's, w×h
// pixels, when it is in range.
func DesktopRequest(o store.Options, protocol string, w, h int, indexed bool) *wire.Desktop {
	d := &wire.Desktop{ViewOnly: o.ViewOnly, NoClipboardIn: !o.ClipboardIn(), NoClipboardOut: !o.ClipboardOut(),
		ColorDepth: o.ColorDepth, IndexedImages: indexed}
	if protocol != wire.ProtocolRDP {
		return d
	}
	d.Domain, d.Security, d.IgnoreCert, d.KeyboardLayout = o.Domain, o.Security, o.IgnoreCert, KeyboardLayouts[o.KeyboardLayout]
	d.Width, d.Height, d.FixedSize = o.Width, o.Height, o.Width != 0
	if d.Width == 0 && w >= wire.MinDesktopSize && h >= wire.MinDesktopSize {
		d.Width, d.Height = min(w, wire.MaxDesktopSize), min(h, wire.MaxDesktopSize)
	}
	return d
}

// OfferedKeySetting names the setting that keeps the host key a target
// offered in place of its pinned one, for an admin to accept.
func OfferedKeySetting(id int64) string { return "hostkey.offered." + strconv.FormatInt(id, 10) }
