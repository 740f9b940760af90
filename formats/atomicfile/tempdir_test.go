package atomicfile

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func backdate(t *testing.T, p string) {
	t.Helper()
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(p, old, old); err != nil {
		t.Fatal(err)
	}
}

func TestMkdirTempModeAndStaleCleanup(t *testing.T) {
	parent := t.TempDir()
	out := filepath.Join(parent, "ckpt")
	mk := func(name string) string {
		p := filepath.Join(parent, name)
		if err := os.MkdirAll(filepath.Join(p, "sub"), 0o700); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(p, "sub", "model.safetensors"), []byte("partial"), 0o644)
		backdate(t, p)
		return p
	}
	stale := mk(".ckpt.tmp-123")
	other := mk(".other.tmp-123") // another output's: never ours to remove
	fresh := filepath.Join(parent, ".ckpt.tmp-456")
	os.Mkdir(fresh, 0o700) // just made: maybe a writer between mkdir and lock
	liveDir, unlockLive, err := MkdirTemp(out)
	if err != nil {
		t.Fatal(err)
	}
	backdate(t, liveDir)
	os.WriteFile(filepath.Join(parent, ".ckpt.tmp-789"), []byte("a file"), 0o644)

	dir, unlock, err := MkdirTemp(out)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	for p, want := range map[string]bool{stale: false, other: true, fresh: true, liveDir: true, dir: true, filepath.Join(parent, ".ckpt.tmp-789"): true} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s: exists %v, want %v", filepath.Base(p), err == nil, want)
		}
	}
	umask := syscall.Umask(0)
	syscall.Umask(umask)
	st, _ := os.Stat(dir)
	if want := os.FileMode(0o755 &^ umask); st.Mode().Perm() != want {
		t.Errorf("temp dir mode %v, want %v", st.Mode().Perm(), want)
	}
	if !strings.HasPrefix(filepath.Base(dir), ".ckpt.tmp-") {
		t.Errorf("temp dir %s", dir)
	}
	// Once its writer lets go, the live one is a leftover too.
	unlockLive()
	if got := CleanStale(out); !slices.Equal(got, []string{liveDir}) {
		t.Errorf("after unlock: removed %v, want %v", got, liveDir)
	}
}

// A writer killed with SIGKILL releases its lock with its life: the next run removes its
// directory.
func TestKilledWriterIsCleanedUp(t *testing.T) {
	if os.Getenv("ATOMICFILE_HELPER_OUT") != "" {
		dir, _, err := MkdirTemp(os.Getenv("ATOMICFILE_HELPER_OUT"))
		if err != nil {
			os.Exit(2)
		}
		os.WriteFile(filepath.Join(dir, "model.safetensors"), make([]byte, 1<<20), 0o644)
		os.Stdout.WriteString(dir + "\n")
		time.Sleep(time.Minute) // killed long before
		os.Exit(0)
	}
	out := filepath.Join(t.TempDir(), "ckpt")
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledWriterIsCleanedUp$")
	cmd.Env = append(os.Environ(), "ATOMICFILE_HELPER_OUT="+out)
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, _ := stdout.Read(buf)
	dir := strings.TrimSpace(string(buf[:n]))
	if dir == "" {
		cmd.Process.Kill()
		t.Fatal("helper printed no directory")
	}
	backdate(t, dir)
	if got := CleanStale(out); len(got) != 0 {
		t.Fatalf("removed %v while its writer lives", got)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if got := CleanStale(out); !slices.Equal(got, []string{dir}) {
		t.Fatalf("after SIGKILL: removed %v, want %s", got, dir)
	}
}

func TestLockDir(t *testing.T) {
	dir := t.TempDir()
	unlock, err := LockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LockDir(dir); !errors.Is(err, ErrLocked) {
		t.Errorf("second lock: %v, want ErrLocked", err)
	}
	unlock()
	again, err := LockDir(dir)
	if err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	again()
}
