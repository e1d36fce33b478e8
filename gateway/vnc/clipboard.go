package vnc

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
)

// Extended clipboard (the RFB community specification, "Extended
// Clipboard Pseudo-Encoding"): cut text messages with a negative length
// carry flags and UTF-8 text, so clipboards are not limited to Latin-1.
const encExtendedClipboard int32 = -1063131698 // 0xC0A1E5CE

// Extended clipboard flags: formats in the low bits, actions in the high.
const (
	clipText    = 1 << 0
	clipCaps    = 1 << 24
	clipRequest = 1 << 25
	clipPeek    = 1 << 26
	clipNotify  = 1 << 27
	clipProvide = 1 << 28
)

// clipState is the extended clipboard's state, shared by the goroutine
// that reads server messages and the one that sends browser input.
type clipState struct {
	extended bool   // the server announced the extended clipboard
	text     string // the browser's latest text, for the server's request
}

// CutText sends clipboard text. With the extended clipboard the server is
// told text is available and fetches it when something on the remote side
// pastes; classic RFB carries Latin-1, so characters outside it become '?'.
func (c *Client) CutText(text string) error {
	if len(text) > maxCutText {
		text = text[:maxCutText]
	}
	c.clipMu.Lock()
	extended := c.clip.extended
	c.clip.text = text // offered again in UTF-8 if the server's capabilities come later
	c.clipMu.Unlock()
	if extended {
		return c.writeExtendedClip(clipNotify|clipText, nil)
	}
	latin := make([]byte, 0, len(text))
	for _, r := range text {
		if r > 0xff {
			r = '?'
		}
		latin = append(latin, byte(r))
	}
	msg := make([]byte, 8+len(latin))
	msg[0] = 6
	binary.BigEndian.PutUint32(msg[4:], uint32(len(latin)))
	copy(msg[8:], latin)
	return c.write(msg)
}

// writeExtendedClip sends a ClientCutText with a negative length: flags,
// then payload.
func (c *Client) writeExtendedClip(flags uint32, payload []byte) error {
	msg := make([]byte, 12, 12+len(payload))
	msg[0] = 6
	binary.BigEndian.PutUint32(msg[4:], uint32(-int32(4+len(payload))))
	binary.BigEndian.PutUint32(msg[8:], flags)
	return c.write(append(msg, payload...))
}

// serverCutText reads a ServerCutText after its type byte, classic or
// extended.
func (c *Client) serverCutText() (Update, error) {
	var hdr [7]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		return Update{}, err
	}
	n := int32(binary.BigEndian.Uint32(hdr[3:]))
	if n < 0 {
		return c.extendedCutText(-int64(n))
	}
	if n > maxCutText {
		return Update{}, fmt.Errorf("%w: clipboard text of %d bytes", ErrProtocol, n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(c.r, b); err != nil {
		return Update{}, err
	}
	// Classic cut text is Latin-1.
	runes := make([]rune, len(b))
	for i, x := range b {
		runes[i] = rune(x)
	}
	return Update{CutText: string(runes), HasCutText: true}, nil
}

func (c *Client) extendedCutText(size int64) (Update, error) {
	if size < 4 || size > maxCutText+1024 {
		return Update{}, fmt.Errorf("%w: extended clipboard message of %d bytes", ErrProtocol, size)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(c.r, b); err != nil {
		return Update{}, err
	}
	flags, payload := binary.BigEndian.Uint32(b), b[4:]
	switch {
	case flags&clipCaps != 0:
		c.clipMu.Lock()
		c.clip.extended = true
		pending := c.clip.text != ""
		c.clipMu.Unlock()
		// Our capabilities: text only, up to maxCutText bytes.
		limit := binary.BigEndian.AppendUint32(nil, maxCutText)
		if err := c.writeExtendedClip(clipCaps|clipRequest|clipPeek|clipNotify|clipProvide|clipText, limit); err != nil {
			return Update{}, err
		}
		if pending { // text sent before the capabilities went as Latin-1
			return Update{}, c.writeExtendedClip(clipNotify|clipText, nil)
		}
		return Update{}, nil
	case flags&clipRequest != 0 && flags&clipText != 0:
		c.clipMu.Lock()
		text := c.clip.text
		c.clipMu.Unlock()
		return Update{}, c.provideText(text)
	case flags&clipPeek != 0:
		c.clipMu.Lock()
		has := c.clip.text != ""
		c.clipMu.Unlock()
		formats := uint32(0)
		if has {
			formats = clipText
		}
		return Update{}, c.writeExtendedClip(clipNotify|formats, nil)
	case flags&clipNotify != 0 && flags&clipText != 0:
		return Update{}, c.writeExtendedClip(clipRequest|clipText, nil)
	case flags&clipProvide != 0 && flags&clipText != 0:
		text, err := readProvidedText(payload)
		if err != nil {
			return Update{}, err
		}
		return Update{CutText: text, HasCutText: true}, nil
	}
	return Update{}, nil // formats and actions we do not use
}

// provideText answers the server's request with our text: UTF-8, CRLF
// line endings, NUL-terminated, zlib-compressed after its length.
func (c *Client) provideText(text string) error {
	data := []byte(strings.ReplaceAll(strings.ReplaceAll(text, "\r\n", "\n"), "\n", "\r\n") + "\x00")
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	binary.Write(zw, binary.BigEndian, uint32(len(data)))
	zw.Write(data)
	if err := zw.Close(); err != nil {
		return err
	}
	return c.writeExtendedClip(clipProvide|clipText, z.Bytes())
}

// readProvidedText takes the text out of a provide message's payload: a
// zlib stream of a length and bytes for each format flagged, text first.
func readProvidedText(payload []byte) (string, error) {
	zr, err := zlib.NewReader(bytes.NewReader(payload))
	if err != nil {
		return "", fmt.Errorf("%w: extended clipboard data: %v", ErrProtocol, err)
	}
	defer zr.Close()
	var n uint32
	if err := binary.Read(zr, binary.BigEndian, &n); err != nil {
		return "", fmt.Errorf("%w: extended clipboard data: %v", ErrProtocol, err)
	}
	if n > maxCutText {
		return "", fmt.Errorf("%w: clipboard text of %d bytes", ErrProtocol, n)
	}
	text := make([]byte, n)
	if _, err := io.ReadFull(zr, text); err != nil {
		return "", fmt.Errorf("%w: extended clipboard data: %v", ErrProtocol, err)
	}
	s := strings.ToValidUTF8(strings.TrimRight(string(text), "\x00"), "\uFFFD")
	return strings.ReplaceAll(s, "\r\n", "\n"), nil
}
