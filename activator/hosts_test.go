package activator

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/activator/routes"
)

func TestHostOf(t *testing.T) {
	for in, want := range map[string]string{
		"hello.default.example.com":       "hello.default.example.com",
		"hello.default.example.com:8080":  "hello.default.example.com",
		"Hello.Default.Example.COM:80":    "hello.default.example.com",
		"hello.default.example.com.":      "hello.default.example.com",
		"hello.default.example.com.:8080": "hello.default.example.com",
		"[::1]:8012":                      "::1",
		"[::1]":                           "::1",
		"127.0.0.1:8012":                  "127.0.0.1",
		"":                                "",
	} {
		if got := hostOf(in); got != want {
			t.Errorf("hostOf(%q) = %q, want %q", in, got, want)
		}
	}
}

// subscriptions records what hostRoutes asks the control plane for.
type subscriptions struct {
	mu  sync.Mutex
	now []string
}

func (s *subscriptions) subscribe(hosts ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = append(s.now, hosts...)
	slices.Sort(s.now)
}

func (s *subscriptions) unsubscribe(hosts ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = slices.DeleteFunc(s.now, func(h string) bool { return slices.Contains(hosts, h) })
}

func (s *subscriptions) get() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.now)
}

func TestHostRoutesSubscribeOnDemandAndEvictTheLeastRecentlyUsed(t *testing.T) {
	subs := &subscriptions{}
	hr := newHostRoutes(2, subs.subscribe, subs.unsubscribe)
	ctx := context.Background()

	// Unknown: subscribed, and nil after the wait.
	if h := hr.get(ctx, "a", time.Nanosecond); h != nil {
		t.Fatalf("get(a) before any route = %+v", h)
	}
	if got := subs.get(); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("subscribed %v, want [a]", got)
	}
	hr.update([]routes.Host{{Name: "a"}, {Name: "zz"}}, nil) // zz was never asked for
	if h := hr.get(ctx, "a", time.Nanosecond); h == nil || h.Name != "a" {
		t.Fatalf("get(a) = %+v, want a's route", h)
	}
	hr.get(ctx, "b", time.Nanosecond)
	hr.get(ctx, "a", time.Nanosecond) // a is now the most recently used
	hr.get(ctx, "c", time.Nanosecond) // evicts b
	if got := subs.get(); !slices.Equal(got, []string{"a", "c"}) {
		t.Fatalf("subscribed %v, want [a c] (b evicted)", got)
	}
	if _, ok := hr.lru.Peek("zz"); ok {
		t.Fatal("a route never asked for was kept")
	}

	// A route removed by the control plane is unknown again, still subscribed.
	hr.update(nil, []string{"a"})
	if h := hr.get(ctx, "a", time.Nanosecond); h != nil {
		t.Fatalf("get(a) after its removal = %+v", h)
	}
	if got := subs.get(); !slices.Equal(got, []string{"a", "c"}) {
		t.Fatalf("subscribed %v, want [a c]", got)
	}
}

// A request waiting for its host's route gets it as soon as the control plane serves it.
func TestHostRoutesWaitForTheRoute(t *testing.T) {
	subs := &subscriptions{}
	hr := newHostRoutes(10, subs.subscribe, subs.unsubscribe)
	got := make(chan *routes.Host)
	go func() { got <- hr.get(context.Background(), "a", time.Hour) }()
	for !slices.Contains(subs.get(), "a") {
		time.Sleep(time.Millisecond)
	}
	hr.update([]routes.Host{{Name: "a", Routes: []routes.Route{{}}}}, nil)
	if h := <-got; h == nil || h.Name != "a" {
		t.Fatalf("get = %+v, want a's route", h)
	}
}
