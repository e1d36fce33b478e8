package saml

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

func TestDecodeResponse(t *testing.T) {
	t.Parallel()
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, tc := range []struct {
		name, field, id string
		err             error
	}{
		{"prefixed", b64(`<?xml version="1.0"?><samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" InResponseTo="id-1"></samlp:Response>`), "id-1", nil},
		{"default namespace", b64(`<Response xmlns="urn:oasis:names:tc:SAML:2.0:protocol" InResponseTo="id-2"/>`), "id-2", nil},
		{"wrapped lines", func() string {
			s := b64(`<Response xmlns="urn:oasis:names:tc:SAML:2.0:protocol" InResponseTo="id-3"/>`)
			return s[:10] + "\r\n" + s[10:]
		}(), "id-3", nil},
		{"unsolicited", b64(`<Response xmlns="urn:oasis:names:tc:SAML:2.0:protocol"/>`), "", errUnsolicited},
		{"other namespace", b64(`<Response xmlns="urn:example" InResponseTo="id-1"/>`), "", errMalformed},
		{"other element", b64(`<samlp:LogoutResponse xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" InResponseTo="id-1"/>`), "", errMalformed},
		{"not base64", "<Response>", "", errMalformed},
		{"not XML", b64("hello"), "", errMalformed},
		{"empty", "", "", errMalformed},
		{"long id", b64(`<Response xmlns="urn:oasis:names:tc:SAML:2.0:protocol" InResponseTo="` + strings.Repeat("a", maxRequestID+1) + `"/>`), "", errMalformed},
		{"too large", strings.Repeat("A", MaxResponseField+4), "", errMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, id, err := decodeResponse(tc.field)
			if !errors.Is(err, tc.err) || (tc.err == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if id != tc.id {
				t.Fatalf("id = %q, want %q", id, tc.id)
			}
		})
	}
}

func FuzzDecodeResponse(f *testing.F) {
	for _, s := range []string{
		`<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" InResponseTo="id-1"></samlp:Response>`,
		`<?xml version="1.0"?><!-- x --><Response xmlns="urn:oasis:names:tc:SAML:2.0:protocol"/>`,
		`<a><b>`,
	} {
		f.Add(base64.StdEncoding.EncodeToString([]byte(s)))
	}
	f.Add("!!!")
	f.Fuzz(func(t *testing.T, field string) {
		doc, id, err := decodeResponse(field)
		if err != nil {
			if doc != nil || id != "" {
				t.Fatal("an error with a result")
			}
			return
		}
		if id == "" || len(id) > maxRequestID || len(doc) > MaxResponseField {
			t.Fatalf("accepted id %q (doc %d bytes)", id, len(doc))
		}
	})
}

// FuzzParseIdPMetadata: whatever an IdP serves as its metadata is refused
// with an error or accepted with what a sign-in needs, never a panic.
func FuzzParseIdPMetadata(f *testing.F) {
	f.Add([]byte(`<EntityDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://idp.example/metadata"><IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.example/sso"/></IDPSSODescriptor></EntityDescriptor>`))
	f.Add([]byte(`<EntitiesDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata"><EntityDescriptor entityID="x"/></EntitiesDescriptor>`))
	f.Add([]byte(`<x`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ed, err := ParseIdPMetadata(data)
		if err != nil {
			return
		}
		if ssoURL(ed) == "" {
			t.Fatal("accepted metadata without a sign-in URL")
		}
		if certs, err := signingCerts(ed); err != nil || len(certs) == 0 {
			t.Fatalf("accepted metadata without a signing certificate: %v", err)
		}
	})
}
