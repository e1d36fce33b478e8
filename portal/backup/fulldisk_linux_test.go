package backup

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestCreateOnFullTmpfs backs up onto a real, small tmpfs: the database
// copy does not fit, and the error says the disk is full, with nothing
// left on it. Mounting needs root (CAP_SYS_ADMIN); TestCreateFullDisk
// covers the archive writer everywhere.
func TestCreateOnFullTmpfs(t *testing.T) {
	t.Parallel()
	s := newSource(t)
	m, err := Create(context.Background(), s.options(filepath.Join(t.TempDir(), "sized.tar")))
	if err != nil {
		t.Fatal(err)
	}
	// Too small for the copy; room for the copy but not the archive.
	for _, size := range []int64{m.Database.Size / 2, m.Database.Size * 3 / 2} {
		t.Run(strconv.FormatInt(size, 10), func(t *testing.T) { testCreateOnFullTmpfs(t, s, size) })
	}
}

func testCreateOnFullTmpfs(t *testing.T, s source, size int64) {
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size="+strconv.FormatInt(size, 10)+",mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v): TestCreateFullDisk injects the failure instead", err)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	to := filepath.Join(mnt, "backup.tar")
	_, err := Create(context.Background(), s.options(to))
	if err == nil || !strings.Contains(err.Error(), "is full; nothing was written") {
		t.Fatalf("backup onto a full disk: %v", err)
	}
	entries, _ := os.ReadDir(mnt)
	if len(entries) != 0 {
		t.Fatalf("left on the full disk: %v", entries)
	}
	t.Log(err)
}
