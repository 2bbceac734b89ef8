//go:build unix

package local

import (
	"bufio"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/routing"
)

// BenchmarkColdStart compares, for examples/helloworld, the app's own start time (exec to its
// "listening" log line, read from a pipe) with the supervisor's (Scale(1) to the Changes signal
// that shows the instance ready after an HTTP probe). The difference is sluice's overhead: port,
// fork/exec, probe schedule, notification.
//
//	go test -run '^$' -bench ColdStart -benchtime 20x ./autoscaler/local
func BenchmarkColdStart(b *testing.B) {
	var app, viaSupervisor time.Duration
	s := newSupervisor(b, Options{})
	for i := 0; b.Loop(); i++ {
		app += appStartTime(b)
		key := routing.Key{Namespace: "default", Name: fmt.Sprintf("hello-%05d", i+1)}
		start := time.Now()
		s.Scale(key, helloSpec(), 1)
		for st, _ := s.Revision(key); st.Ready == 0; st, _ = s.Revision(key) {
			<-s.Changes()
		}
		viaSupervisor += time.Since(start)
		s.Scale(key, Spec{}, 0)
		waitFor(b, s, key, "no instance", func(st RevisionStatus) bool { return len(st.Instances) == 0 })
	}
	n := float64(b.N)
	b.ReportMetric(float64(app.Microseconds())/n/1000, "app-start-ms")
	b.ReportMetric(float64(viaSupervisor.Microseconds())/n/1000, "scale-to-ready-ms")
	b.ReportMetric(float64((viaSupervisor-app).Microseconds())/n/1000, "overhead-ms")
}

func appStartTime(b *testing.B) time.Duration {
	port, err := freePort(nil)
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(helloworldBin)
	cmd.Env = []string{fmt.Sprintf("PORT=%d", port), "HOST=127.0.0.1"}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "helloworld listening") {
			return time.Since(start)
		}
	}
	b.Fatal("helloworld exited before listening")
	return 0
}
