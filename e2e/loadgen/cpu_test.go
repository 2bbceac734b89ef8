package main

import (
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	// A command name with spaces and a ')' of its own; utime 250 and stime 30 ticks.
	line := "4242 (we (ird) name) S 1 4242 4242 0 -1 4194560 1203 0 0 0 250 30 0 0 20 0 9 0 1000 0 0\n"
	got, err := parseStatCPU(line)
	if err != nil {
		t.Fatal(err)
	}
	if want := 2800 * time.Millisecond; got != want {
		t.Errorf("CPU time = %v, want %v", got, want)
	}
	for _, bad := range []string{"", "4242 (x S 1", "4242 (x) S 1 2 3", "4242 (x) S 1 4242 4242 0 -1 4194560 1203 0 0 0 2x5 30"} {
		if _, err := parseStatCPU(bad); err == nil {
			t.Errorf("parseStatCPU(%q): no error", bad)
		}
	}
}

// The load generator's own CPU time grows while it works: a /proc that reads as zero would
// report every proxy as free. The spin ends as soon as the growth shows; its deadline is long
// because on a loaded machine 50ms of CPU can take many times that in wall-clock time.
func TestCPUTimeOfSelfGrows(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc/PID/stat is Linux's")
	}
	before, err := cpuTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	var sink strings.Builder
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		sink.Reset()
		for range 1000 {
			sink.WriteString("spin")
		}
		after, err := cpuTime(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if after >= before+50*time.Millisecond {
			return
		}
	}
	t.Errorf("CPU time did not grow by 50ms in 30s of spinning")
}

func TestCPUPerRequest(t *testing.T) {
	before := cpuSnapshot{self: 1 * time.Second, backend: 2 * time.Second, proxy: 3 * time.Second}
	after := cpuSnapshot{self: 2 * time.Second, backend: 4 * time.Second, proxy: 3 * time.Second}
	got := cpuPerRequest(before, after, 100_000)
	want := CPUPerRequest{Measured: true, Loadgen: 10 * time.Microsecond, Backend: 20 * time.Microsecond}
	if got != want {
		t.Errorf("cpuPerRequest = %+v, want %+v", got, want)
	}
	if got.Total() != 30*time.Microsecond {
		t.Errorf("Total = %v, want 30µs", got.Total())
	}
	if c := cpuPerRequest(cpuSnapshot{err: os.ErrNotExist}, after, 10); c.Measured {
		t.Errorf("a snapshot that failed gave %+v", c)
	}
	if c := cpuPerRequest(before, after, 0); c.Measured {
		t.Errorf("no requests gave %+v", c)
	}
}
