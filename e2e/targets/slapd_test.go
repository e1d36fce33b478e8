package targets

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSlapdServesDirectory starts the test directory and searches it with
// ldapsearch over StartTLS and LDAPS, trusting the test CA, as the service
// account; an anonymous search sees nothing and a change is applied.
func TestSlapdServesDirectory(t *testing.T) {
	t.Parallel()
	s := NewSlapd(t)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, s.CAPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	search := func(args ...string) (string, error) {
		cmd := exec.Command("ldapsearch", append([]string{"-x", "-LLL"}, args...)...)
		cmd.Env = append(os.Environ(), "LDAPTLS_CACERT="+ca, "LDAPTLS_REQCERT=demand")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, conn := range [][]string{{"-H", s.URL, "-ZZ"}, {"-H", s.LDAPSURL}} {
		out, err := search(append(conn, "-D", SlapdServiceDN, "-w", s.ServicePassword, "-b", SlapdGroups, "(member="+SlapdGroupDN("ops")+")", "cn")...)
		if err != nil || !strings.Contains(out, "cn: staff") {
			t.Fatalf("ldapsearch %v: %v: %s", conn, err, out)
		}
	}
	// The ACL hides entries from anonymous clients: slapd answers "no
	// such object".
	if out, _ := search("-H", s.URL, "-b", SlapdPeople, "(uid=alice)"); !strings.Contains(out, "No such object") {
		t.Fatalf("anonymous search: %q", out)
	}
	if err := s.Modify(context.Background(), "dn: "+SlapdGroupDN("dev")+"\nchangetype: modify\nadd: member\nmember: "+SlapdCarol.DN()+"\n"); err != nil {
		t.Fatal(err)
	}
	out, err := search("-H", s.URL, "-D", SlapdCarol.DN(), "-w", SlapdCarol.Password, "-b", SlapdGroups, "(member="+SlapdCarol.DN()+")", "cn")
	if err != nil || !strings.Contains(out, "cn: dev") {
		t.Fatalf("carol's groups after the change: %v: %s", err, out)
	}
}
