package ui

import "time"

// SAMLProviderView is the form of a SAML identity provider.
type SAMLProviderView struct {
	ID          int64
	IsNew       bool
	Name        string
	DisplayName string
	Enabled     bool
	// MetadataURL is where the IdP's metadata is fetched from;
	// HasUploadedMetadata says an uploaded metadata file is kept.
	MetadataURL          string
	HasUploadedMetadata  bool
	UsernameAttribute    string
	DisplayNameAttribute string
	EmailAttribute       string
	GroupsAttribute      string
	AllowedDomains       string
	// SPMetadataURL (the SP's entity id) and ACSURL are what the IdP is
	// given; SPCertificate the SP's certificate (PEM) and when it expires.
	SPMetadataURL  string
	ACSURL         string
	SPCertificate  string
	SPCertNotAfter time.Time
	// Test is the result of the Test button, if it was pressed.
	Test   *SAMLTestView
	Errors Errors
}

// SAMLTestView is what the Test button found at the IdP.
type SAMLTestView struct {
	Error         string
	EntityID      string
	SSOURL        string
	CertNotAfter  time.Time
	Certificates  int
	SPMetadataURL string
}

// SAMLRefusedView is the page of a refused SAML sign-in.
type SAMLRefusedView struct {
	Provider string
	Message  string
}
