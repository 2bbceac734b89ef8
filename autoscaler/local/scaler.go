package local

import (
	"time"

	"github.com/sluice-dev/sluice/autoscaler"
	"github.com/sluice-dev/sluice/routing"
	v1 "github.com/sluice-dev/sluice/routing/v1"
)

// Scaler is the autoscaler's Scaler for revisions run as local processes (standalone mode): it
// turns a revision into a process Spec and the supervisor's view of its instances into the
// autoscaler's, summing restarts and naming the latest crash.
type Scaler struct{ sup *Supervisor }

// NewScaler returns the Scaler that runs revisions on sup.
func NewScaler(sup *Supervisor) Scaler { return Scaler{sup} }

func (l Scaler) Check(rev *v1.Revision) error {
	_, err := SpecFromRevision(rev)
	return err
}

func (l Scaler) Scale(rev *v1.Revision, n int) {
	spec, err := SpecFromRevision(rev)
	if err != nil {
		return // Check said so already; the revision is not Ready with that reason
	}
	l.sup.Scale(routing.KeyOf(rev), spec, n)
}

func (l Scaler) Forget(key routing.Key)   { l.sup.Forget(key) }
func (l Scaler) Changes() <-chan struct{} { return l.sup.Changes() }
func (l Scaler) Changed() []routing.Key   { return l.sup.Changed() }
func (l Scaler) Instances(key routing.Key) autoscaler.Instances {
	st, _ := l.sup.Revision(key)
	out := autoscaler.Instances{Desired: st.Desired, Actual: st.Actual, Ready: st.Ready, Endpoints: st.Endpoints()}
	var lastCrashStart time.Time
	for _, in := range st.Instances {
		out.Restarts += in.Restarts
		crashed := in.State == StateCrashed
		if in.LastExit == "" || (!crashed && in.Restarts == 0) {
			continue // never crashed: its LastExit, if any, is a stop
		}
		if crashed {
			out.Failure = "instance " + in.Name + " " + in.LastExit
		}
		if out.LastCrash == "" || in.Started.After(lastCrashStart) {
			out.LastCrash, lastCrashStart = "instance "+in.Name+" "+in.LastExit, in.Started
		}
	}
	return out
}
