package saml

import (
	"bytes"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Limits on what the browser brings to the ACS.
const (
	// MaxResponseField bounds the base64 SAMLResponse form field, checked
	// before it is decoded; real responses (a signed assertion with a
	// certificate and some attributes) are a few KiB.
	MaxResponseField = 256 << 10
	// maxRequestID bounds an InResponseTo (ours are 41 characters).
	maxRequestID = 128
	// maxPreludeTokens bounds the tokens read before the root element
	// (XML declaration, comments, white space).
	maxPreludeTokens = 16
)

// errMalformed is a SAMLResponse that is not a base64 SAML Response.
var errMalformed = errors.New("malformed SAML response")

// decodeResponse decodes the SAMLResponse form field of the HTTP-POST
// binding and reads, without trusting it yet, the InResponseTo of its
// root Response element: the request it claims to answer, which says
// which request id to check the signed response against.
func decodeResponse(field string) (doc []byte, inResponseTo string, err error) {
	if len(field) > MaxResponseField {
		return nil, "", fmt.Errorf("%w: larger than %d KiB", errMalformed, MaxResponseField>>10)
	}
	// IdPs may wrap the base64 in lines.
	field = strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\r', '\n':
			return -1
		}
		return r
	}, field)
	doc, err = base64.StdEncoding.DecodeString(field)
	if err != nil {
		return nil, "", fmt.Errorf("%w: not base64", errMalformed)
	}
	d := xml.NewDecoder(bytes.NewReader(doc))
	for range maxPreludeTokens {
		tok, err := d.RawToken()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, "", fmt.Errorf("%w: not XML", errMalformed)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if t.Name.Local != "Response" || !protocolNamespace(t) {
				return nil, "", fmt.Errorf("%w: not a SAML Response", errMalformed)
			}
			for _, a := range t.Attr {
				if a.Name.Space == "" && a.Name.Local == "InResponseTo" {
					if a.Value == "" || len(a.Value) > maxRequestID {
						return nil, "", fmt.Errorf("%w: bad InResponseTo", errMalformed)
					}
					return doc, a.Value, nil
				}
			}
			// An unsolicited (IdP-initiated) response: refused.
			return nil, "", errUnsolicited
		case xml.CharData:
			if len(bytes.TrimSpace(t)) != 0 {
				return nil, "", fmt.Errorf("%w: not XML", errMalformed)
			}
		case xml.EndElement:
			return nil, "", fmt.Errorf("%w: not XML", errMalformed)
		}
	}
	return nil, "", fmt.Errorf("%w: no Response element", errMalformed)
}

const protocolNS = "urn:oasis:names:tc:SAML:2.0:protocol"

// protocolNamespace reports whether the root element t (read raw, so
// with its prefix unresolved) is in the SAML protocol namespace.
func protocolNamespace(t xml.StartElement) bool {
	prefix := t.Name.Space
	for _, a := range t.Attr {
		if prefix == "" && a.Name.Space == "" && a.Name.Local == "xmlns" {
			return a.Value == protocolNS
		}
		if prefix != "" && a.Name.Space == "xmlns" && a.Name.Local == prefix {
			return a.Value == protocolNS
		}
	}
	return false
}
