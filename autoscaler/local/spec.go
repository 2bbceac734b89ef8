// Package local runs a revision's instances as processes on this machine: sluice's standalone
// mode. A Supervisor starts and stops them as the autoscaler asks, probes their readiness, restarts
// the ones that crash and keeps their output in log files.
package local

import (
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/sluice-dev/sluice/routing/v1"
)

// ErrImageOnly is returned for a container that names an image and no command: running images
// is Kubernetes' job, a local revision runs a command.
var ErrImageOnly = errors.New("image revisions need Kubernetes mode; in standalone mode give the container a command")

// Protocol is what an instance speaks on its port.
type Protocol string

// Protocols, named like Knative's port names.
const (
	ProtocolHTTP1 Protocol = "http1"
	ProtocolH2C   Protocol = "h2c"
)

// Defaults of Kubernetes' pod and probe fields, which Knative keeps.
const (
	DefaultTerminationGracePeriod = 30 * time.Second
	defaultProbeTimeout           = time.Second
	defaultProbePeriod            = 10 * time.Second
	defaultFailureThreshold       = 3
)

// Spec is how to run one instance of a revision. PORT is not in Env: each instance gets its own.
type Spec struct {
	// Command is the container's command followed by its args.
	Command []string
	// Env holds "NAME=value" pairs: the template's env, then K_SERVICE, K_CONFIGURATION and
	// K_REVISION as Knative sets them.
	Env []string
	// Dir is the working directory; "" is sluice's own.
	Dir      string
	Probe    Probe
	Protocol Protocol
	// TerminationGracePeriod is how long an instance has between SIGTERM and SIGKILL.
	TerminationGracePeriod time.Duration
}

// Probe is a readiness probe. It always targets the instance's own port, whatever port the
// template names, as Knative requires the probe port to be the container port.
type Probe struct {
	// HTTPGet, when set, probes with an HTTP GET (2xx and 3xx pass); otherwise a TCP connect.
	HTTPGet          *HTTPGetProbe
	InitialDelay     time.Duration
	Period           time.Duration
	Timeout          time.Duration
	SuccessThreshold int
	FailureThreshold int
}

// HTTPGetProbe is the request of an HTTP readiness probe.
type HTTPGetProbe struct {
	Path string
	// Host is the Host header; "" means the instance's address.
	Host    string
	Headers []corev1.HTTPHeader
}

// SpecFromRevision is how to run rev locally. A template with an image and no command gives an
// error wrapping ErrImageOnly; anything sluice cannot run locally gives an error naming the field.
func SpecFromRevision(rev *v1.Revision) (Spec, error) {
	ps := podSpecOf(rev)
	if ps == nil || len(ps.Containers) == 0 {
		return Spec{}, fmt.Errorf("spec.containers: a revision needs one container")
	}
	if len(ps.Containers) > 1 {
		return Spec{}, fmt.Errorf("spec.containers: a local revision runs one container, got %d", len(ps.Containers))
	}
	c := ps.Containers[0]
	if len(c.Command) == 0 {
		if c.Image != "" {
			return Spec{}, fmt.Errorf("container image %s has no command: %w", c.Image, ErrImageOnly)
		}
		return Spec{}, fmt.Errorf("spec.containers[0].command: a local revision needs a command")
	}
	spec := Spec{
		Command:                append(append([]string(nil), c.Command...), c.Args...),
		Dir:                    c.WorkingDir,
		Protocol:               ProtocolHTTP1,
		TerminationGracePeriod: DefaultTerminationGracePeriod,
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			return Spec{}, fmt.Errorf("spec.containers[0].env %s: valueFrom is not supported for local revisions; give a value", e.Name)
		}
		if e.Name == "PORT" {
			// Knative reserves PORT; here every instance gets its own.
			continue
		}
		spec.Env = append(spec.Env, e.Name+"="+e.Value)
	}
	if v := rev.Labels[v1.LabelService]; v != "" {
		spec.Env = append(spec.Env, "K_SERVICE="+v)
	}
	if v := rev.Labels[v1.LabelConfiguration]; v != "" {
		spec.Env = append(spec.Env, "K_CONFIGURATION="+v)
	}
	spec.Env = append(spec.Env, "K_REVISION="+rev.Name)
	if len(c.Ports) > 0 && (c.Ports[0].Name == "h2c" || c.Ports[0].Name == "http2") {
		spec.Protocol = ProtocolH2C
	}
	if ps.TerminationGracePeriodSeconds != nil && *ps.TerminationGracePeriodSeconds >= 0 {
		spec.TerminationGracePeriod = time.Duration(*ps.TerminationGracePeriodSeconds) * time.Second
	}
	probe, err := probeFrom(c.ReadinessProbe)
	if err != nil {
		return Spec{}, fmt.Errorf("spec.containers[0].readinessProbe: %w", err)
	}
	spec.Probe = probe
	return spec, nil
}

// podSpecOf is the one place that reaches into the revision's pod spec, so that it compiles
// whether RevisionSpec embeds corev1.PodSpec or *corev1.PodSpec, and a nil pointer is no panic.
func podSpecOf(rev *v1.Revision) *corev1.PodSpec {
	switch ps := any(rev.Spec.PodSpec).(type) {
	case *corev1.PodSpec:
		return ps
	case corev1.PodSpec:
		return &ps
	}
	return nil
}

func probeFrom(p *corev1.Probe) (Probe, error) {
	out := Probe{
		Timeout:          defaultProbeTimeout,
		Period:           defaultProbePeriod,
		SuccessThreshold: 1,
		FailureThreshold: defaultFailureThreshold,
	}
	if p == nil {
		return out, nil
	}
	switch {
	case p.Exec != nil:
		return Probe{}, fmt.Errorf("exec probes are not supported for local revisions; use httpGet or tcpSocket")
	case p.GRPC != nil:
		return Probe{}, fmt.Errorf("grpc probes are not supported for local revisions; use httpGet or tcpSocket")
	case p.HTTPGet != nil:
		if p.HTTPGet.Scheme == corev1.URISchemeHTTPS {
			return Probe{}, fmt.Errorf("httpGet.scheme HTTPS is not supported for local revisions")
		}
		out.HTTPGet = &HTTPGetProbe{Path: p.HTTPGet.Path, Host: p.HTTPGet.Host, Headers: p.HTTPGet.HTTPHeaders}
		if out.HTTPGet.Path == "" {
			out.HTTPGet.Path = "/"
		}
	}
	out.InitialDelay = time.Duration(p.InitialDelaySeconds) * time.Second
	if p.PeriodSeconds > 0 {
		out.Period = time.Duration(p.PeriodSeconds) * time.Second
	}
	if p.TimeoutSeconds > 0 {
		out.Timeout = time.Duration(p.TimeoutSeconds) * time.Second
	}
	if p.SuccessThreshold > 0 {
		out.SuccessThreshold = int(p.SuccessThreshold)
	}
	if p.FailureThreshold > 0 {
		out.FailureThreshold = int(p.FailureThreshold)
	}
	return out, nil
}
