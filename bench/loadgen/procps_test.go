package loadgen

import (
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"
)

func TestParseCPUTime(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		bad  bool
	}{
		{"0:00.04", 40 * time.Millisecond, false}, // macOS
		{"1:02.50", time.Minute + 2500*time.Millisecond, false},
		{"00:00:00", 0, false}, // procps
		{"01:02:03", time.Hour + 2*time.Minute + 3*time.Second, false},
		{"2-03:04:05", 51*time.Hour + 4*time.Minute + 5*time.Second, false},
		{"12:34:56.78", 12*time.Hour + 34*time.Minute + 56780*time.Millisecond, false},
		{"", 0, true},
		{"5", 0, true},
		{"1:2:3:4", 0, true},
		{"0:60", 0, true},
		{"a:00", 0, true},
		{"x-01:00:00", 0, true},
		{"-1:00", 0, true},
	}
	for _, tt := range tests {
		got, err := parseCPUTime(tt.in)
		if (err != nil) != tt.bad || got != tt.want {
			t.Errorf("parseCPUTime(%q) = %s, %v; want %s, error %v", tt.in, got, err, tt.want, tt.bad)
		}
	}
}

// TestPS reads this process and a child of it through ps and pgrep, the
// fallback for systems without /proc, and checks them against /proc
// where there is one.
func TestPS(t *testing.T) {
	for _, tool := range []string{"ps", "pgrep"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s: %v", tool, err)
		}
	}
	st, err := psStat(os.Getpid())
	if err != nil || st.RSS <= 0 || st.CPU < 0 {
		t.Fatalf("psStat(self) = %+v, %v; want a positive RSS", st, err)
	}
	if proc, err := ReadProc(os.Getpid()); err == nil && (st.RSS < proc.RSS/4 || st.RSS > proc.RSS*4) {
		t.Errorf("RSS from ps %d and from ReadProc %d are far apart", st.RSS, proc.RSS)
	}
	if _, err := psStat(1 << 30); err == nil {
		t.Error("psStat of a pid that does not exist succeeded")
	}

	child := exec.Command("sleep", "30")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
	if kids := psChildren(os.Getpid()); !slices.Contains(kids, child.Process.Pid) {
		t.Errorf("psChildren(self) = %v, want it to hold %d", kids, child.Process.Pid)
	}
	if kids := Children(os.Getpid()); !slices.Contains(kids, child.Process.Pid) {
		t.Errorf("Children(self) = %v, want it to hold %d", kids, child.Process.Pid)
	}
}
