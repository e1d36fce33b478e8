package saml

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	var good Config
	good.MetadataURL = "https://idp.example.com/metadata"
	if err := good.NewKeyPair("https://portal.example/saml/corp/metadata", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	back, err := ParseConfig(good.JSON())
	if err != nil || back.SPKey != good.SPKey {
		t.Fatalf("round trip: %v", err)
	}
	other := good
	if err := other.NewKeyPair("x", time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(c *Config)
		want string
	}{
		{"no metadata", func(c *Config) { c.MetadataURL = "" }, "metadata URL"},
		{"both", func(c *Config) { c.MetadataXML = "<x/>" }, "not both"},
		{"bad URL", func(c *Config) { c.MetadataURL = "ftp://idp/metadata" }, "http or https"},
		{"big file", func(c *Config) { c.MetadataURL = ""; c.MetadataXML = strings.Repeat("x", MaxMetadataXML+1) }, "larger"},
		{"bad attribute", func(c *Config) { c.GroupsAttribute = "a\x00b" }, "groups attribute"},
		{"bad domain", func(c *Config) { c.AllowedDomains = []string{"Example.COM"} }, "e-mail domain"},
		{"no key", func(c *Config) { c.SPKey = "" }, "no service provider key"},
		{"mismatched key", func(c *Config) { c.SPCertificate = other.SPCertificate }, "not for its key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.edit(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one saying %q", err, tc.want)
			}
		})
	}
	if d := ParseDomains(" Example.com, @corp.example\nx.org "); strings.Join(d, "|") != "example.com|corp.example|x.org" {
		t.Errorf("ParseDomains = %q", d)
	}
}
