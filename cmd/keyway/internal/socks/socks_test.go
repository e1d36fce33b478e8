package socks

import (
	"bytes"
	"io"
	"net/netip"
	"testing"
)

type rw struct {
	io.Reader
	out bytes.Buffer
}

func (r *rw) Write(p []byte) (int, error) { return r.out.Write(p) }

func greeting(req ...byte) []byte {
	return append([]byte{5, 1, 0}, req...)
}

func TestHandshake(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		in    []byte
		want  Request
		reply []byte // after the method answer, when an error replies
		bad   bool
	}{
		{"ipv4", greeting(5, 1, 0, 1, 10, 20, 0, 5, 0x15, 0x38), Request{Addr: netip.MustParseAddr("10.20.0.5"), Port: 5432}, nil, false},
		{"ipv6", greeting(append(append([]byte{5, 1, 0, 4}, netip.MustParseAddr("::1").AsSlice()...), 0, 22)...), Request{Addr: netip.MustParseAddr("::1"), Port: 22}, nil, false},
		{"name", greeting(append(append([]byte{5, 1, 0, 3, 9}, "db.lab.in"...), 0, 80)...), Request{Name: "db.lab.in", Port: 80}, nil, false},
		{"address as name", greeting(append(append([]byte{5, 1, 0, 3, 9}, "127.0.0.1"...), 0, 80)...), Request{Addr: netip.MustParseAddr("127.0.0.1"), Port: 80}, nil, false},
		{"bind", greeting(5, 2, 0, 1, 1, 2, 3, 4, 0, 80), Request{}, []byte{5, CommandUnsupported}, true},
		{"udp", greeting(5, 3, 0, 1, 1, 2, 3, 4, 0, 80), Request{}, []byte{5, CommandUnsupported}, true},
		{"address type", greeting(5, 1, 0, 9, 1, 2), Request{}, []byte{5, AddressUnsupported}, true},
		{"empty name", greeting(5, 1, 0, 3, 0, 0, 80), Request{}, []byte{5, HostUnreachable}, true},
		{"name with a newline", greeting(append(append([]byte{5, 1, 0, 3, 4}, "a\nb."...), 0, 80)...), Request{}, []byte{5, HostUnreachable}, true},
		{"port 0", greeting(5, 1, 0, 1, 1, 2, 3, 4, 0, 0), Request{}, []byte{5, HostUnreachable}, true},
		{"short", greeting(5, 1, 0, 1, 1, 2), Request{}, nil, true},
		{"socks4", []byte{4, 1, 0, 80, 1, 2, 3, 4, 0}, Request{}, nil, true},
		{"no methods", []byte{5, 0}, Request{}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := &rw{Reader: bytes.NewReader(tt.in)}
			got, err := Handshake(c)
			if tt.bad {
				if err == nil {
					t.Fatalf("Handshake = %v, want an error", got)
				}
				if tt.reply != nil && !bytes.HasPrefix(c.out.Bytes()[2:], tt.reply) {
					t.Fatalf("reply % x, want % x after the method answer", c.out.Bytes(), tt.reply)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Handshake = %v, %v; want %v", got, err, tt.want)
			}
			if !bytes.Equal(c.out.Bytes(), []byte{5, 0}) {
				t.Fatalf("wrote % x, want only the method answer", c.out.Bytes())
			}
		})
	}
}

func TestAuthenticationOnlyIsRefused(t *testing.T) {
	t.Parallel()
	c := &rw{Reader: bytes.NewReader([]byte{5, 1, 2})}
	if _, err := Handshake(c); err == nil {
		t.Fatal("a client offering only username/password got through")
	}
	if !bytes.Equal(c.out.Bytes(), []byte{5, 0xff}) {
		t.Fatalf("wrote % x, want 05 ff", c.out.Bytes())
	}
}

func FuzzHandshake(f *testing.F) {
	f.Add(greeting(5, 1, 0, 1, 10, 20, 0, 5, 0x15, 0x38))
	f.Add(greeting(append(append([]byte{5, 1, 0, 3, 9}, "db.lab.in"...), 0, 80)...))
	f.Add(greeting(5, 1, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 22))
	f.Add([]byte{5, 2, 1, 0, 5, 1, 0, 3, 255})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		c := &rw{Reader: r}
		req, err := Handshake(c)
		if err != nil {
			return
		}
		if req.Port < 1 || req.Port > 65535 {
			t.Fatalf("port %d accepted", req.Port)
		}
		if req.Addr.IsValid() == (req.Name != "") {
			t.Fatalf("request %#v has both or neither of address and name", req)
		}
		if req.Name != "" && !validName([]byte(req.Name)) {
			t.Fatalf("name %q accepted", req.Name)
		}
		if read := len(b) - r.Len(); read > 2+255+4+1+255+2 {
			t.Fatalf("read %d bytes, more than a greeting and request can hold", read)
		}
	})
}
