package files

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
	"testing"
)

func TestCheckName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"plain.txt", true}, {"with space", true}, {"ünïcødé ✓", true}, {"new\nline", true}, {".hidden", true}, {"...", true},
		{"", false}, {".", false}, {"..", false}, {"a/b", false}, {"/abs", false}, {"nul\x00", false}, {strings.Repeat("x", 256), false},
	} {
		if err := CheckName(tc.name); (err == nil) != tc.ok {
			t.Errorf("CheckName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestCheckPathKeepsPathsAsGiven(t *testing.T) {
	for _, tc := range []struct {
		path string
		ok   bool
	}{
		{"/", true}, {"/home/u/a b", true}, {"/home/u/../v", true}, {"/x\ny", true},
		{"", false}, {"relative/path", false}, {"../up", false}, {"/nul\x00", false}, {"/" + strings.Repeat("x", 4096), false},
	} {
		if err := CheckPath(tc.path); (err == nil) != tc.ok {
			t.Errorf("CheckPath(%q) = %v, want ok=%v", tc.path, err, tc.ok)
		}
	}
	if got := Join("/", "a"); got != "/a" {
		t.Errorf("Join(/, a) = %q", got)
	}
	if got := Join("/home/u/../v", "a b"); got != "/home/u/../v/a b" {
		t.Errorf("Join cleaned the path: %q", got)
	}
}

func TestParseMode(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want fs.FileMode
		ok   bool
	}{
		{"644", 0o644, true}, {"0755", 0o755, true}, {"4755", fs.ModeSetuid | 0o755, true}, {"1777", fs.ModeSticky | 0o777, true},
		{"rwx", 0, false}, {"888", 0, false}, {"17777", 0, false}, {"", 0, false},
	} {
		got, err := ParseMode(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseMode(%q) = %v, %v; want %v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestLimitReader(t *testing.T) {
	for _, tc := range []struct {
		size, limit int
		tooLarge    bool
	}{
		{0, 10, false}, {10, 10, false}, {11, 10, true}, {1 << 20, 1000, true},
	} {
		n, err := io.Copy(io.Discard, &limitReader{r: strings.NewReader(strings.Repeat("x", tc.size)), left: int64(tc.limit)})
		if errors.Is(err, ErrTooLarge) != tc.tooLarge || (!tc.tooLarge && n != int64(tc.size)) || n > int64(tc.limit)+1 {
			t.Errorf("%d bytes, limit %d: read %d, %v", tc.size, tc.limit, n, err)
		}
	}
}

func TestMessage(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("upload: %w", ErrTooLarge), ErrTooLarge.Error()},
		{&fs.PathError{Op: "open", Path: "/x", Err: fs.ErrPermission}, "Permission denied"},
		{fmt.Errorf("stat: %w", fs.ErrNotExist), "No such file or directory"},
		{errors.New("something else"), "something else"},
	} {
		if got := Message(tc.err); got != tc.want {
			t.Errorf("Message(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

// FuzzNames: whatever name the browser sends, a name CheckName accepts
// joins as one more element of its folder, is a dotfile exactly when it
// starts with a dot, and no zip entry name holds a backslash.
func FuzzNames(f *testing.F) {
	for _, s := range []string{"a", ".ssh", "..", "a/b", `..\..\x`, "new\nline", " sp  aces ", "\u202eexe.txt"} {
		f.Add("/home/u", s)
	}
	f.Fuzz(func(t *testing.T, dir, name string) {
		if strings.Contains(ZipName(name), `\`) {
			t.Fatalf("zip name of %q holds a backslash", name)
		}
		if CheckPath(dir) != nil || IsDotPath(dir) {
			return
		}
		if CheckName(name) != nil {
			return
		}
		p := Join(dir, name)
		if CheckPath(p) != nil && len(p) <= maxPath {
			t.Fatalf("Join(%q, %q) = %q is not a path", dir, name, p)
		}
		if path.Base(p) != name && !strings.HasSuffix(dir, "/") {
			t.Fatalf("Join(%q, %q) = %q: the name is not its last element", dir, name, p)
		}
		if IsDotPath(p) != strings.HasPrefix(name, ".") {
			t.Fatalf("IsDotPath(%q) = %v for name %q", p, IsDotPath(p), name)
		}
	})
}
