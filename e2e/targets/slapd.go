package targets

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// slapdStartTimeout bounds slapd's start until both its ports accept
// connections, on a loaded machine.
const slapdStartTimeout = 30 * time.Second

// The test directory (DIT) served by Slapd.
const (
	SlapdBase      = "dc=keyway,dc=test"
	SlapdPeople    = "ou=people," + SlapdBase
	SlapdGroups    = "ou=groups," + SlapdBase
	SlapdAdminDN   = "cn=admin," + SlapdBase
	SlapdServiceDN = "cn=keyway,ou=services," + SlapdBase
)

// SlapdUser is a person in the test directory.
type SlapdUser struct {
	UID, Password, DisplayName, Mail string
}

// DN is the user's entry.
func (u SlapdUser) DN() string { return "uid=" + u.UID + "," + SlapdPeople }

// The people and groups of the test directory: alice is in ops directly,
// and through ops in staff (nested: staff has ops as a member); bob is in
// dev only; carol is in no group.
var (
	SlapdAlice = SlapdUser{UID: "alice", Password: "alice-password-1", DisplayName: "Alice Liddell", Mail: "alice@keyway.test"}
	SlapdBob   = SlapdUser{UID: "bob", Password: "bob-password-22", DisplayName: "Bob Builder", Mail: "bob@keyway.test"}
	SlapdCarol = SlapdUser{UID: "carol", Password: "carol-password-3", DisplayName: "Carol Danvers", Mail: "carol@keyway.test"}
)

// SlapdGroupDN is the DN of the test group cn.
func SlapdGroupDN(cn string) string { return "cn=" + cn + "," + SlapdGroups }

// Slapd is OpenLDAP's server on 127.0.0.1 serving the test directory over
// plain LDAP (with StartTLS) and LDAPS, with a certificate from a test CA.
type Slapd struct {
	// URL is ldap://127.0.0.1:PORT (StartTLS offered); LDAPSURL is
	// ldaps://127.0.0.1:PORT.
	URL, LDAPSURL string
	// CAPEM is the test CA that signed the server's certificate (for
	// localhost and 127.0.0.1).
	CAPEM []byte
	// AdminPassword is the root DN's (SlapdAdminDN) password;
	// ServicePassword the read-only service account's (SlapdServiceDN).
	AdminPassword, ServicePassword string

	dir    string
	cmd    *exec.Cmd
	done   <-chan struct{}
	stderr *bytes.Buffer
}

// StartSlapd writes a configuration and the test directory under dir
// (which must exist), loads it with slapadd and starts slapd on two free
// loopback ports.
func StartSlapd(ctx context.Context, dir string) (*Slapd, error) {
	if _, err := exec.LookPath("slapd"); err != nil {
		if _, err2 := os.Stat("/usr/sbin/slapd"); err2 != nil {
			return nil, errors.New("slapd not found: apt-get install slapd ldap-utils")
		}
	}
	dir, err := absDir(dir)
	if err != nil {
		return nil, err
	}
	s := &Slapd{dir: dir, AdminPassword: "admin-" + rand.Text()[:16], ServicePassword: "svc-" + rand.Text()[:16]}
	if s.CAPEM, err = writeTestCA(dir); err != nil {
		return nil, fmt.Errorf("slapd certificates: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "db"), 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "slapd.conf"), []byte(s.config()), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "dit.ldif"), []byte(s.dit()), 0o600); err != nil {
		return nil, err
	}
	add := exec.CommandContext(ctx, slapdBin("slapadd"), "-f", filepath.Join(dir, "slapd.conf"), "-l", filepath.Join(dir, "dit.ldif"))
	if out, err := add.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("slapadd: %v: %s", err, out)
	}
	// A port picked free may be taken before slapd binds it; try again then.
	for attempt := 0; ; attempt++ {
		if err = s.start(ctx); err == nil || attempt == 4 {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

// slapdBin finds a program of slapd or ldap-utils (slapd's are in /usr/sbin,
// which a test's PATH may lack).
func slapdBin(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	return filepath.Join("/usr/sbin", name)
}

func (s *Slapd) start(ctx context.Context) error {
	p1, err := freePort()
	if err != nil {
		return err
	}
	p2, err := freePort()
	if err != nil {
		return err
	}
	s.URL = "ldap://127.0.0.1:" + strconv.Itoa(p1)
	s.LDAPSURL = "ldaps://127.0.0.1:" + strconv.Itoa(p2)
	s.stderr = &bytes.Buffer{}
	// -d 0: stay in the foreground (any -d does) and log nothing.
	s.cmd = exec.Command(slapdBin("slapd"), "-d", "0", "-f", filepath.Join(s.dir, "slapd.conf"),
		"-h", s.URL+"/ "+s.LDAPSURL+"/")
	s.cmd.Dir = s.dir
	s.cmd.Stderr = s.stderr
	s.cmd.Stdout = s.stderr
	if s.done, err = startChild(s.cmd); err != nil {
		return fmt.Errorf("start slapd: %w", err)
	}
	for _, p := range []int{p1, p2} {
		if err := waitListening(ctx, net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), s.done, slapdStartTimeout); err != nil {
			s.stop()
			return fmt.Errorf("slapd on port %d: %w: %s", p, err, strings.TrimSpace(s.stderr.String()))
		}
	}
	return nil
}

// config is slapd.conf: the schemas inetOrgPerson needs, TLS, one mdb
// database. Passwords are readable by nobody; entries by bound users only,
// so a search needs a bind (the service account's or the user's own).
func (s *Slapd) config() string {
	d := s.dir
	return `include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile ` + filepath.Join(d, "slapd.pid") + `
argsfile ` + filepath.Join(d, "slapd.args") + `
TLSCACertificateFile ` + filepath.Join(d, "ca.crt") + `
TLSCertificateFile ` + filepath.Join(d, "server.crt") + `
TLSCertificateKeyFile ` + filepath.Join(d, "server.key") + `
database mdb
maxsize 16777216
suffix "` + SlapdBase + `"
rootdn "` + SlapdAdminDN + `"
rootpw ` + s.AdminPassword + `
directory ` + filepath.Join(d, "db") + `
index objectClass eq
index uid,member eq
access to attrs=userPassword
  by self write
  by anonymous auth
  by * none
access to *
  by users read
  by * none
`
}

// dit is the test directory in LDIF. staff has ops as a member (a nested
// group); the groups are groupOfNames, as most directories but AD have.
func (s *Slapd) dit() string {
	var b strings.Builder
	entry := func(lines ...string) {
		b.WriteString(strings.Join(lines, "\n"))
		b.WriteString("\n\n")
	}
	entry("dn: "+SlapdBase, "objectClass: dcObject", "objectClass: organization", "o: Keyway test", "dc: keyway")
	for _, ou := range []string{"people", "groups", "services"} {
		entry("dn: ou="+ou+","+SlapdBase, "objectClass: organizationalUnit", "ou: "+ou)
	}
	entry("dn: "+SlapdServiceDN, "objectClass: person", "objectClass: simpleSecurityObject", "cn: keyway", "sn: keyway",
		"userPassword: "+s.ServicePassword)
	for _, u := range []SlapdUser{SlapdAlice, SlapdBob, SlapdCarol} {
		first, last, _ := strings.Cut(u.DisplayName, " ")
		entry("dn: "+u.DN(), "objectClass: inetOrgPerson", "uid: "+u.UID, "cn: "+u.DisplayName, "givenName: "+first,
			"sn: "+last, "displayName: "+u.DisplayName, "mail: "+u.Mail, "userPassword: "+u.Password)
	}
	entry("dn: "+SlapdGroupDN("ops"), "objectClass: groupOfNames", "cn: ops", "member: "+SlapdAlice.DN())
	entry("dn: "+SlapdGroupDN("dev"), "objectClass: groupOfNames", "cn: dev", "member: "+SlapdBob.DN())
	entry("dn: "+SlapdGroupDN("staff"), "objectClass: groupOfNames", "cn: staff", "member: "+SlapdGroupDN("ops"))
	return b.String()
}

// Modify applies LDIF changes (ldapmodify syntax) as the directory's admin.
func (s *Slapd) Modify(ctx context.Context, ldif string) error {
	cmd := exec.CommandContext(ctx, "ldapmodify", "-x", "-H", s.URL, "-D", SlapdAdminDN, "-w", s.AdminPassword)
	cmd.Stdin = strings.NewReader(ldif)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ldapmodify (in ldap-utils): %v: %s", err, out)
	}
	return nil
}

func (s *Slapd) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	signalAndWait(s.cmd, s.done, syscall.SIGTERM, 10*time.Second)
}

// Stop ends slapd and waits for it; the directory stays.
func (s *Slapd) Stop() { s.stop() }

// NewSlapd starts slapd with the test directory in a test's temporary
// directory and stops it when the test ends.
func NewSlapd(t testing.TB) *Slapd {
	t.Helper()
	s, err := StartSlapd(context.Background(), t.TempDir())
	if err != nil {
		t.Fatalf("start slapd: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// writeTestCA writes ca.crt, server.crt and server.key into dir: a fresh
// CA, and a certificate it signed for localhost and 127.0.0.1. It returns
// the CA's PEM.
func writeTestCA(dir string) ([]byte, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Keyway test CA " + rand.Text()[:8]},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(48 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(48 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{"ca.crt", caPEM, 0o644},
		{"server.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644},
		{"server.key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return nil, err
		}
	}
	return caPEM, nil
}

// TestCAPEM returns a fresh, unrelated CA certificate: a wrong CA for
// tests that a certificate from another CA is refused.
func TestCAPEM(t testing.TB) []byte {
	t.Helper()
	pem, err := writeTestCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return pem
}
