package v1

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"
)

// Knative's defaults (config-defaults in a stock install).
const (
	DefaultNamespace            = "default"
	DefaultTimeoutSeconds       = 300
	MaxTimeoutSeconds           = 600
	DefaultContainerConcurrency = 0
	MaxContainerConcurrency     = 1000
	DefaultContainerName        = "user-container"
)

// SetDefaults fills in what Knative's defaulting webhook fills in, in place. It is idempotent,
// so admission can run it on objects that were already defaulted by Decode.
func SetDefaults(o Object) {
	setTypeMeta(o)
	if o.GetNamespace() == "" {
		o.SetNamespace(DefaultNamespace)
	}
	switch o := o.(type) {
	case *Service:
		defaultRevisionSpec(&o.Spec.Template.Spec)
		o.Spec.Traffic = DefaultTraffic(o.Spec.Traffic)
	case *Configuration:
		defaultRevisionSpec(&o.Spec.Template.Spec)
	case *Route:
		o.Spec.Traffic = DefaultTraffic(o.Spec.Traffic)
	case *Revision:
		defaultRevisionSpec(&o.Spec)
	}
}

func defaultRevisionSpec(s *RevisionSpec) {
	if s.PodSpec == nil {
		// JSON without any pod spec field leaves the pointer nil; everything after defaulting
		// reads the promoted fields.
		s.PodSpec = &corev1.PodSpec{}
	}
	if s.TimeoutSeconds == nil {
		s.TimeoutSeconds = ptr(int64(DefaultTimeoutSeconds))
	}
	if s.ContainerConcurrency == nil {
		s.ContainerConcurrency = ptr(int64(DefaultContainerConcurrency))
	}
	for i := range s.Containers {
		if s.Containers[i].Name != "" {
			continue
		}
		// Knative names a lone container user-container and numbers them when there are several.
		if len(s.Containers) == 1 {
			s.Containers[i].Name = DefaultContainerName
		} else {
			s.Containers[i].Name = DefaultContainerName + "-" + strconv.Itoa(i)
		}
	}
}

// DefaultTraffic sends everything to the latest ready revision when no traffic is given, and
// spells out latestRevision on every entry as Knative does (false when a revision is named). It
// defaults tt in place. Package traffic explains Knative's traffic rules as a whole; this one
// stays here because SetDefaults needs it and traffic imports v1.
func DefaultTraffic(tt []TrafficTarget) []TrafficTarget {
	if len(tt) == 0 {
		return []TrafficTarget{{LatestRevision: ptr(true), Percent: ptr(int64(100))}}
	}
	for i := range tt {
		if tt[i].LatestRevision == nil {
			tt[i].LatestRevision = ptr(tt[i].RevisionName == "")
		}
	}
	return tt
}

func ptr[T any](v T) *T { return &v }
