package v1

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/sluice-dev/sluice/routing/v1/autoscaling"
)

// FieldError is one invalid field of an object.
type FieldError struct {
	// Path is the field, as in "spec.traffic[1].percent".
	Path    string
	Message string
}

func (e FieldError) Error() string { return e.Path + ": " + e.Message }

// ValidationError lists everything wrong with one object, so a user fixes a file in one pass.
type ValidationError struct {
	// Object is "Service default/hello".
	Object string
	Errors []FieldError
}

func (e *ValidationError) Error() string {
	msgs := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		msgs[i] = fe.Error()
	}
	return e.Object + ": " + strings.Join(msgs, "; ")
}

type errs []FieldError

func (es *errs) add(p *field.Path, format string, args ...any) {
	*es = append(*es, FieldError{Path: p.String(), Message: fmt.Sprintf(format, args...)})
}

// Validate checks one defaulted object on its own, as Knative's validating webhook does; rules
// that need other objects (does a revision exist?) belong to routing.Apply.
func Validate(o Object) error {
	var es errs
	meta := field.NewPath("metadata")
	validateName(&es, meta, o.GetName(), o.GetGenerateName())
	if msgs := validation.IsDNS1123Label(o.GetNamespace()); len(msgs) > 0 {
		es.add(meta.Child("namespace"), "%q is not a DNS-1123 label: %s", o.GetNamespace(), strings.Join(msgs, ", "))
	}
	validateAnnotations(&es, meta.Child("annotations"), o.GetAnnotations())
	if _, ok := o.(*Revision); !ok {
		validateRolloutDuration(&es, meta.Child("annotations"), o.GetAnnotations())
	}
	spec := field.NewPath("spec")
	switch o := o.(type) {
	case *Service:
		validateTemplate(&es, spec.Child("template"), o.Name, o.Namespace, &o.Spec.Template)
		validateTraffic(&es, spec.Child("traffic"), o.Name, o.Spec.Traffic, false)
	case *Configuration:
		validateTemplate(&es, spec.Child("template"), o.Name, o.Namespace, &o.Spec.Template)
	case *Route:
		validateTraffic(&es, spec.Child("traffic"), o.Name, o.Spec.Traffic, true)
	case *Revision:
		validateRevisionSpec(&es, spec, &o.Spec)
		validateEndpointsAnnotation(&es, meta.Child("annotations").Key(AnnotationEndpoints), o.Annotations)
		validateAutoscaling(&es, meta.Child("annotations"), o.Annotations)
	}
	if len(es) == 0 {
		return nil
	}
	return &ValidationError{Object: Describe(o), Errors: es}
}

// generatedSuffixLen is the length of "-00001", the suffix of generated revision names.
const generatedSuffixLen = 6

func validateName(es *errs, meta *field.Path, name, generateName string) {
	if generateName != "" {
		es.add(meta.Child("generateName"), "not supported: set metadata.name")
	}
	if name == "" {
		es.add(meta.Child("name"), "required")
		return
	}
	// Names become host labels ({name}.{namespace}.{domain}) and the prefix of revision names,
	// so they must be DNS-1035 labels short enough to take the "-00001" suffix.
	if msgs := validation.IsDNS1035Label(name); len(msgs) > 0 {
		es.add(meta.Child("name"), "%q is not a DNS-1035 label: %s", name, strings.Join(msgs, ", "))
	} else if len(name)+generatedSuffixLen > validation.DNS1035LabelMaxLength {
		es.add(meta.Child("name"), "%q is too long: at most %d characters, so that revision names like %s-00001 fit in 63",
			name, validation.DNS1035LabelMaxLength-generatedSuffixLen, name)
	}
}

func validateTemplate(es *errs, p *field.Path, parent, namespace string, t *RevisionTemplateSpec) {
	meta := p.Child("metadata")
	if t.Name != "" {
		if msgs := validation.IsDNS1123Label(t.Name); len(msgs) > 0 {
			es.add(meta.Child("name"), "%q is not a DNS-1123 label: %s", t.Name, strings.Join(msgs, ", "))
		}
		if parent != "" && !strings.HasPrefix(t.Name, parent+"-") {
			es.add(meta.Child("name"), "%q must have prefix %q", t.Name, parent+"-")
		}
	}
	if t.GenerateName != "" {
		es.add(meta.Child("generateName"), "not supported: set metadata.name or leave it empty for a generated name")
	}
	if t.Namespace != "" && t.Namespace != namespace {
		es.add(meta.Child("namespace"), "must be empty or %q: a revision lives in its configuration's namespace, got %q", namespace, t.Namespace)
	}
	validateAnnotations(es, meta.Child("annotations"), t.Annotations)
	validateEndpointsAnnotation(es, meta.Child("annotations").Key(AnnotationEndpoints), t.Annotations)
	validateAutoscaling(es, meta.Child("annotations"), t.Annotations)
	validateRevisionSpec(es, p.Child("spec"), &t.Spec)
}

// validateAnnotations checks annotation keys and sizes as Kubernetes does (qualified names,
// optionally prefixed by a DNS subdomain; 256 KiB in all), so what sluice accepts a cluster would.
func validateAnnotations(es *errs, p *field.Path, annotations map[string]string) {
	for _, e := range apivalidation.ValidateAnnotations(annotations, p) {
		*es = append(*es, FieldError{Path: e.Field, Message: e.ErrorBody()})
	}
}

// validateRolloutDuration is Knative's check of the rollout-duration annotation
// (pkg/apis/serving/metadata_validation.go): a Go duration, whole seconds, not negative.
func validateRolloutDuration(es *errs, p *field.Path, annotations map[string]string) {
	v, ok := annotations[AnnotationRolloutDuration]
	if !ok {
		return
	}
	kp := p.Key(AnnotationRolloutDuration)
	d, err := time.ParseDuration(v)
	switch {
	case err != nil:
		es.add(kp, "%q is not a duration (want e.g. 120s or 5m)", v)
	case d.Round(time.Second) != d:
		es.add(kp, "%q is not at second precision", v)
	case d < 0:
		es.add(kp, "%q must not be negative", v)
	}
}

// reservedEnv are the variables sluice sets for every instance, as Knative's queue-proxy and
// runtime contract do; a template may not set them (Knative's reservedEnvVars).
var reservedEnv = map[string]bool{"PORT": true, "K_SERVICE": true, "K_CONFIGURATION": true, "K_REVISION": true}

// validateEnv checks a container's env as Kubernetes and Knative do: every variable has a valid
// name, and none of the reserved ones is set.
func validateEnv(es *errs, p *field.Path, env []corev1.EnvVar) {
	for i, e := range env {
		np := p.Index(i).Child("name")
		switch {
		case e.Name == "":
			es.add(np, "required")
		case reservedEnv[e.Name]:
			es.add(np, "%q is a reserved environment variable: sluice sets it for every instance", e.Name)
		default:
			if msgs := validation.IsEnvVarName(e.Name); len(msgs) > 0 {
				es.add(np, "%q is not a valid environment variable name: %s", e.Name, strings.Join(msgs, ", "))
			}
		}
	}
}

func validateRevisionSpec(es *errs, p *field.Path, s *RevisionSpec) {
	if s.TimeoutSeconds != nil && (*s.TimeoutSeconds < 1 || *s.TimeoutSeconds > MaxTimeoutSeconds) {
		es.add(p.Child("timeoutSeconds"), "must be between 1 and %d, got %d", MaxTimeoutSeconds, *s.TimeoutSeconds)
	}
	if s.ContainerConcurrency != nil && (*s.ContainerConcurrency < 0 || *s.ContainerConcurrency > MaxContainerConcurrency) {
		es.add(p.Child("containerConcurrency"), "must be between 0 and %d, got %d", MaxContainerConcurrency, *s.ContainerConcurrency)
	}
	for _, f := range []struct {
		name string
		v    *int64
	}{{"responseStartTimeoutSeconds", s.ResponseStartTimeoutSeconds}, {"idleTimeoutSeconds", s.IdleTimeoutSeconds}} {
		if f.v != nil && (*f.v < 0 || *f.v > MaxTimeoutSeconds) {
			es.add(p.Child(f.name), "must be between 0 and %d, got %d", MaxTimeoutSeconds, *f.v)
		}
	}
	cs := p.Child("containers")
	if s.PodSpec == nil || len(s.Containers) == 0 {
		es.add(cs, "at least one container is required")
		return
	}
	ports := 0
	names := map[string]bool{}
	for i, c := range s.Containers {
		cp := cs.Index(i)
		if c.Image == "" && len(c.Command) == 0 {
			es.add(cp, "needs an image or a command")
		}
		if names[c.Name] {
			es.add(cp.Child("name"), "duplicate container name %q", c.Name)
		}
		names[c.Name] = true
		validateEnv(es, cp.Child("env"), c.Env)
		for j, port := range c.Ports {
			pp := cp.Child("ports").Index(j)
			ports++
			if ports == 2 {
				es.add(pp, "at most one port may be given across all containers: it is where requests are sent")
			}
			validatePort(es, pp, port)
		}
	}
}

func validatePort(es *errs, p *field.Path, port corev1.ContainerPort) {
	switch port.Name {
	case "", "http1", "h2c", "http2":
	default:
		es.add(p.Child("name"), "must be empty, %q, %q or %q (the protocol the container speaks), got %q", "http1", "h2c", "http2", port.Name)
	}
	if port.ContainerPort < 1 || port.ContainerPort > 65535 {
		es.add(p.Child("containerPort"), "must be between 1 and 65535, got %d", port.ContainerPort)
	}
	if port.Protocol != "" && port.Protocol != corev1.ProtocolTCP {
		es.add(p.Child("protocol"), "must be TCP, got %q", port.Protocol)
	}
}

// validateAutoscaling checks the autoscaling.knative.dev/* annotations on their own, as Knative's
// webhook does; how they combine with serve's global flags is checked when the revision is scaled.
func validateAutoscaling(es *errs, p *field.Path, annotations map[string]string) {
	if err := autoscaling.ValidateAnnotations(annotations); err != nil {
		es.add(p, "%v", err)
	}
}

func validateEndpointsAnnotation(es *errs, p *field.Path, annotations map[string]string) {
	v, ok := annotations[AnnotationEndpoints]
	if !ok {
		return
	}
	if _, err := ParseEndpoints(v); err != nil {
		es.add(p, "%v", err)
	}
}

// ParseEndpoints parses the sluice.dev/endpoints annotation: comma-separated IP:port pairs
// ("10.0.0.5:8080,[fd00::1]:8080"). Only IP literals are accepted because the addresses go
// into EDS load assignments as they are, and Envoy's EDS endpoints must be IPs.
func ParseEndpoints(s string) ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		host, port, err := net.SplitHostPort(part)
		if err != nil {
			return nil, fmt.Errorf("%q is not IP:port: %w", part, err)
		}
		addr, err := netip.ParseAddr(host)
		if err != nil {
			return nil, fmt.Errorf("%q: host %q is not an IP address (EDS needs IP addresses, not host names)", part, host)
		}
		if addr.Zone() != "" {
			return nil, fmt.Errorf("%q: IPv6 zones are not supported", part)
		}
		if addr.IsUnspecified() {
			return nil, fmt.Errorf("%q: %s is not an address requests can be sent to; give the instance's IP address", part, addr)
		}
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("%q: port %q must be a number between 1 and 65535", part, port)
		}
		out = append(out, netip.AddrPortFrom(addr, uint16(n)))
	}
	return out, nil
}

// validateTraffic is Knative's route_validation for spec.traffic. Package traffic explains these
// rules with the rest of Knative's traffic semantics; the checks stay here, beside the other
// field checks, because traffic imports v1.
func validateTraffic(es *errs, p *field.Path, name string, tt []TrafficTarget, standaloneRoute bool) {
	var sum int64
	tags := map[string]int{}
	for i, t := range tt {
		tp := p.Index(i)
		latest := t.LatestRevision != nil && *t.LatestRevision
		switch {
		case standaloneRoute && t.RevisionName != "" && t.ConfigurationName != "":
			es.add(tp, "expected exactly one of revisionName or configurationName, got both")
		case standaloneRoute && t.RevisionName == "" && t.ConfigurationName == "":
			es.add(tp, "expected exactly one of revisionName or configurationName, got neither")
		case !standaloneRoute && t.ConfigurationName != "":
			es.add(tp.Child("configurationName"), "must not be set in a Service: use revisionName or latestRevision: true")
		case t.RevisionName != "" && latest:
			es.add(tp.Child("latestRevision"), "may not be true when revisionName is set")
		case t.RevisionName == "" && !latest:
			es.add(tp.Child("latestRevision"), "may not be false when revisionName is not set")
		}
		if t.RevisionName != "" {
			if msgs := validation.IsDNS1123Label(t.RevisionName); len(msgs) > 0 {
				es.add(tp.Child("revisionName"), "%q is not a DNS-1123 label: %s", t.RevisionName, strings.Join(msgs, ", "))
			}
		}
		if t.Percent != nil {
			if *t.Percent < 0 || *t.Percent > 100 {
				es.add(tp.Child("percent"), "must be between 0 and 100, got %d", *t.Percent)
			}
			sum += *t.Percent
		}
		if t.URL != "" {
			es.add(tp.Child("url"), "is output only and must not be set")
		}
		if t.Tag != "" {
			if msgs := validation.IsDNS1035Label(t.Tag); len(msgs) > 0 {
				es.add(tp.Child("tag"), "%q is not a DNS-1035 label: %s", t.Tag, strings.Join(msgs, ", "))
			} else if host := t.Tag + "-" + name; len(host) > validation.DNS1035LabelMaxLength {
				es.add(tp.Child("tag"), "%q makes the host label %q longer than 63 characters", t.Tag, host)
			}
			if j, dup := tags[t.Tag]; dup {
				es.add(tp.Child("tag"), "duplicate tag %q (also at %s)", t.Tag, p.Index(j))
			} else {
				tags[t.Tag] = i
			}
		}
	}
	if sum != 100 {
		es.add(p, "Traffic targets sum to %d, want 100", sum)
	}
}
