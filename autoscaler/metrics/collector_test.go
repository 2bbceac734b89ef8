package metrics

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

const rev = "default/hello-00001"

func dp(id string, inProgress, issued uint64, s int) Report {
	return Report{Reporter: id, Kind: DataPlane, Cluster: rev, InProgress: inProgress, Issued: issued, Interval: time.Second, At: at(s)}
}

func act(id string, inProgress, issued uint64, s int) Report {
	r := dp(id, inProgress, issued, s)
	r.Kind = Activator
	return r
}

func TestCollectorLoad(t *testing.T) {
	tests := []struct {
		name    string
		reports []Report
		forget  []string
		now     int
		want    Load
	}{
		{"nothing", nil, nil, 0, Load{}},
		{"data-plane reporters add up", []Report{dp("envoy-a", 3, 30, 0), dp("grpc-b", 4, 10, 0)}, nil, 0, Load{7, 40}},
		{"activator and data plane see the same requests: no double count",
			[]Report{dp("envoy-a", 5, 50, 0), act("activator-1", 5, 50, 0)}, nil, 0, Load{5, 50}},
		{"the larger view wins: the activator buffers what the data plane sent it",
			[]Report{dp("envoy-a", 2, 50, 0), act("activator-1", 6, 40, 0)}, nil, 0, Load{6, 50}},
		{"activators add up among themselves",
			[]Report{act("activator-1", 3, 0, 0), act("activator-2", 3, 0, 0), dp("envoy-a", 4, 0, 0)}, nil, 0, Load{6, 0}},
		{"rps is issued over the interval",
			[]Report{{Reporter: "a", Cluster: rev, Issued: 10, Interval: 2 * time.Second, At: at(0)}}, nil, 0, Load{0, 5}},
		{"a zero interval gives no rate", []Report{{Reporter: "a", Cluster: rev, Issued: 10, At: at(0)}}, nil, 0, Load{}},
		{"the latest report of a reporter replaces the previous one",
			[]Report{dp("envoy-a", 5, 0, 0), dp("envoy-a", 1, 0, 1)}, nil, 1, Load{1, 0}},
		{"an older report arriving late is ignored",
			[]Report{dp("envoy-a", 1, 0, 1), dp("envoy-a", 5, 0, 0)}, nil, 1, Load{1, 0}},
		{"a forgotten reporter stops counting",
			[]Report{dp("envoy-a", 5, 0, 0), dp("envoy-b", 2, 0, 0)}, []string{"envoy-a"}, 0, Load{2, 0}},
		{"stale reports expire", []Report{dp("envoy-a", 5, 0, 0), dp("envoy-b", 2, 0, 2)}, nil, 4, Load{2, 0}},
		{"other clusters do not count",
			[]Report{{Reporter: "a", Cluster: "default/other-00001", InProgress: 9, At: at(0)}}, nil, 0, Load{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCollector(3 * time.Second)
			for _, r := range tt.reports {
				c.Report(r)
			}
			for _, id := range tt.forget {
				c.Forget(id)
			}
			if got := c.Load(rev, at(tt.now)); got != tt.want {
				t.Errorf("Load = %+v, want %+v", got, tt.want)
			}
			// Sample must see the same load.
			c.Track(rev, time.Minute)
			c.Sample(at(tt.now))
			a := c.Averages(rev, time.Minute, 6*time.Second, at(tt.now))
			if !a.HasData || a.StableConcurrency != tt.want.Concurrency || a.PanicRPS != tt.want.RPS {
				t.Errorf("after one sample: %+v, want %+v", a, tt.want)
			}
		})
	}
}

func TestCollectorWindows(t *testing.T) {
	c := NewCollector(0)
	if a := c.Averages(rev, time.Minute, 6*time.Second, at(0)); a.HasData {
		t.Fatalf("untracked revision has data: %+v", a)
	}
	c.Track(rev, time.Minute)
	if a := c.Averages(rev, time.Minute, 6*time.Second, at(0)); a.HasData {
		t.Fatalf("never sampled revision has data: %+v", a)
	}
	// 54 seconds idle (tracked, nobody reports: zero), then 6 seconds at 60 in flight from one client.
	for s := 0; s < 60; s++ {
		if s >= 54 {
			c.Report(dp("envoy-a", 60, 120, s))
		}
		c.Sample(at(s))
	}
	a := c.Averages(rev, time.Minute, 6*time.Second, at(59))
	want := Averages{StableConcurrency: 6, PanicConcurrency: 60, StableRPS: 12, PanicRPS: 120, HasData: true}
	if a != want {
		t.Fatalf("Averages = %+v, want %+v", a, want)
	}
	// The client disconnects: from the next sample on the revision records zeros.
	c.Forget("envoy-a")
	for s := 60; s < 66; s++ {
		c.Sample(at(s))
	}
	if a := c.Averages(rev, time.Minute, 6*time.Second, at(65)); a.PanicConcurrency != 0 || !near(a.StableConcurrency, 6) {
		t.Fatalf("after Forget: %+v, want panic 0 and stable still 6", a)
	}
	// Stale reports are dropped from memory at Sample.
	c.Report(dp("envoy-b", 1, 0, 66))
	c.Sample(at(70))
	c.mu.Lock()
	n := len(c.reporters)
	c.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d reporters kept after their reports went stale", n)
	}
	c.Untrack(rev)
	if a := c.Averages(rev, time.Minute, 6*time.Second, at(70)); a.HasData {
		t.Fatalf("untracked revision still has data: %+v", a)
	}
}

func TestCollectorTrackLonger(t *testing.T) {
	c := NewCollector(0)
	c.Track(rev, 10*time.Second)
	c.Sample(at(0))
	c.Track(rev, 6*time.Second) // shorter: keeps the windows and their data
	if a := c.Averages(rev, 10*time.Second, time.Second, at(0)); !a.HasData {
		t.Fatal("Track with a shorter window dropped the data")
	}
	c.Track(rev, time.Minute)
	c.Sample(at(1))
	c.mu.Lock()
	capacity := c.revisions[rev].concurrency.Capacity()
	c.mu.Unlock()
	if capacity != time.Minute {
		t.Fatalf("capacity %v after Track with a minute", capacity)
	}
}

// Reporters on their own goroutines, a sampler and readers, as the LRS server and the autoscaler will
// use it; run with -race.
func TestCollectorConcurrent(t *testing.T) {
	c := NewCollector(0)
	c.Track(rev, time.Minute)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("reporter-%d", g)
			for s := range 200 {
				c.Report(dp(id, 1, 1, s))
			}
			c.Forget(id)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for s := range 200 {
			c.Sample(at(s))
			c.Averages(rev, time.Minute, 6*time.Second, at(s))
			c.Load(rev, at(s))
		}
	}()
	wg.Wait()
	if l := c.Load(rev, at(199)); l != (Load{}) {
		t.Fatalf("load after every reporter was forgotten: %+v", l)
	}
}
