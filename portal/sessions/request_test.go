package sessions

import (
	"fmt"
	"testing"

	"github.com/keyway-dev/keyway/gateway/wire"
	"github.com/keyway-dev/keyway/portal/store"
)

func TestDesktopRequest(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opts     store.Options
		protocol string
		w, h     int
		want     wire.Desktop
	}{
		{"vnc keeps the server's size", store.Options{ColorDepth: 16, Clipboard: "to-remote"}, "vnc", 1200, 800,
			wire.Desktop{ColorDepth: 16, NoClipboardOut: true}},
		{"rdp fits the browser", store.Options{Domain: "CORP", Security: "nla", KeyboardLayout: "de-de"}, "rdp", 1200, 800,
			wire.Desktop{Domain: "CORP", Security: "nla", KeyboardLayout: 0x0407, Width: 1200, Height: 800}},
		{"rdp with a fixed size", store.Options{Width: 1280, Height: 720}, "rdp", 1200, 800,
			wire.Desktop{Width: 1280, Height: 720, FixedSize: true}},
		{"rdp with a tiny window gets the default", store.Options{}, "rdp", 100, 50, wire.Desktop{}},
		{"rdp with a huge window is capped", store.Options{}, "rdp", 20000, 9000,
			wire.Desktop{Width: wire.MaxDesktopSize, Height: wire.MaxDesktopSize}},
		{"view only, no clipboard", store.Options{ViewOnly: true, Clipboard: "none", IgnoreCert: true}, "rdp", 0, 0,
			wire.Desktop{ViewOnly: true, NoClipboardIn: true, NoClipboardOut: true, IgnoreCert: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := DesktopRequest(tc.opts, tc.protocol, tc.w, tc.h, false); *got != tc.want {
				t.Errorf("got %+v, want %+v", *got, tc.want)
			}
		})
	}
}

func TestSessionRecordingFromResource(t *testing.T) {
	for _, tc := range []struct {
		o    store.Options
		want string
	}{
		{store.Options{}, "&{Required:false Input:false}"},
		{store.Options{Recording: "on", RecordInput: true}, "&{Required:false Input:true}"},
		{store.Options{Recording: "required"}, "&{Required:true Input:false}"},
		{store.Options{Recording: "off", RecordInput: true}, "<nil>"},
	} {
		if got := fmt.Sprintf("%+v", Recording(tc.o)); got != tc.want {
			t.Errorf("%+v: %s, want %s", tc.o, got, tc.want)
		}
	}
}
