// Package v1 holds the serving.knative.dev/v1 kinds as users write them: Service, Configuration,
// Route and Revision. The field names and JSON shapes follow knative.dev/serving/pkg/apis/serving/v1
// so that Knative YAML applies unchanged; the pod spec is Kubernetes' own type for the same reason.
package v1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// APIVersion is the only apiVersion sluice accepts.
const APIVersion = "serving.knative.dev/v1"

// Kinds.
const (
	KindService       = "Service"
	KindConfiguration = "Configuration"
	KindRoute         = "Route"
	KindRevision      = "Revision"
)

// Service owns a Configuration and a Route of the same name.
type Service struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              ServiceSpec   `json:"spec,omitempty"`
	Status            ServiceStatus `json:"status,omitempty"`
}

// ServiceSpec is a Configuration's template plus a Route's traffic.
type ServiceSpec struct {
	ConfigurationSpec `json:",inline"`
	RouteSpec         `json:",inline"`
}

// ServiceStatus joins the status of the owned Configuration and Route.
type ServiceStatus struct {
	Status                    `json:",inline"`
	ConfigurationStatusFields `json:",inline"`
	RouteStatusFields         `json:",inline"`
}

// Configuration stamps out a new immutable Revision on every change of its template.
type Configuration struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              ConfigurationSpec   `json:"spec,omitempty"`
	Status            ConfigurationStatus `json:"status,omitempty"`
}

// ConfigurationSpec is the template of the next revision.
type ConfigurationSpec struct {
	Template RevisionTemplateSpec `json:"template"`
}

// ConfigurationStatus reports the newest created and the newest ready revision.
type ConfigurationStatus struct {
	Status                    `json:",inline"`
	ConfigurationStatusFields `json:",inline"`
}

// ConfigurationStatusFields are shared by Configuration and Service status.
type ConfigurationStatusFields struct {
	LatestReadyRevisionName   string `json:"latestReadyRevisionName,omitempty"`
	LatestCreatedRevisionName string `json:"latestCreatedRevisionName,omitempty"`
}

// RevisionTemplateSpec is the metadata and spec a Revision is created from.
type RevisionTemplateSpec struct {
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              RevisionSpec `json:"spec,omitempty"`
}

// Revision is an immutable snapshot of a Configuration's template.
type Revision struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              RevisionSpec   `json:"spec,omitempty"`
	Status            RevisionStatus `json:"status,omitempty"`
}

// RevisionSpec is a pod spec plus Knative's per-request limits.
//
// The pod spec is held by pointer so that objects made from the same template (a Service, its
// Configuration and the Revision stamped from it) share one: it is most of each object's size
// (592 bytes of struct before its slices). encoding/json promotes an embedded pointer's fields
// as it does a struct's, so the JSON and YAML forms are the same. It is nil only when built in
// code without one or decoded from JSON with no pod spec field at all; SetDefaults (and so Decode,
// admission and the store) makes it non-nil, and Validate rejects a nil one, so objects in a
// State always have one. A pod spec reachable from a State is never mutated: replace the pointer.
type RevisionSpec struct {
	*corev1.PodSpec `json:",inline"`
	// ContainerConcurrency is the hard limit of concurrent requests per instance; 0 is unlimited.
	ContainerConcurrency *int64 `json:"containerConcurrency,omitempty"`
	// TimeoutSeconds is the request timeout: default 300, at most 600.
	TimeoutSeconds              *int64 `json:"timeoutSeconds,omitempty"`
	ResponseStartTimeoutSeconds *int64 `json:"responseStartTimeoutSeconds,omitempty"`
	IdleTimeoutSeconds          *int64 `json:"idleTimeoutSeconds,omitempty"`
}

// RevisionStatus reports readiness and, for revisions sluice scales, their scale. The scale
// fields are live: the API fills them in from the autoscaler when it answers, and they are never
// stored (a scale event is not worth a disk write).
type RevisionStatus struct {
	Status          `json:",inline"`
	ActualReplicas  *int32 `json:"actualReplicas,omitempty"`
	DesiredReplicas *int32 `json:"desiredReplicas,omitempty"`
	// Scale is sluice's view of the autoscaler's last decision; nil for revisions it does not scale.
	Scale *ScaleStatus `json:"scale,omitempty"`
}

// ScaleStatus is what `sluice get revisions` shows of a scaled revision beyond Knative's fields.
type ScaleStatus struct {
	// ReadyReplicas are the instances that pass their readiness probe.
	ReadyReplicas int32 `json:"readyReplicas"`
	// Mode is where gateways send the revision's requests: "serve" (its instances) or "proxy"
	// (the activator, at zero or while the burst capacity is short).
	Mode string `json:"mode"`
	// Reason explains the last scaling decision.
	Reason string `json:"reason,omitempty"`
	// Restarts counts the current instances' restarts after crashes; LastCrash says how the
	// latest one ended, so a crash stays visible after its instance is ready again.
	Restarts  int32  `json:"restarts,omitempty"`
	LastCrash string `json:"lastCrash,omitempty"`
}

// Route splits traffic between revisions and names them with tags.
type Route struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              RouteSpec   `json:"spec,omitempty"`
	Status            RouteStatus `json:"status,omitempty"`
}

// RouteSpec is the desired traffic.
type RouteSpec struct {
	Traffic []TrafficTarget `json:"traffic,omitempty"`
}

// RouteStatus reports the traffic actually served (which lags the spec while a target is not ready).
type RouteStatus struct {
	Status            `json:",inline"`
	RouteStatusFields `json:",inline"`
}

// RouteStatusFields are shared by Route and Service status.
type RouteStatusFields struct {
	URL     string          `json:"url,omitempty"`
	Address *Addressable    `json:"address,omitempty"`
	Traffic []TrafficTarget `json:"traffic,omitempty"`
}

// Addressable is the in-cluster address of a Route.
type Addressable struct {
	URL string `json:"url,omitempty"`
}

// TrafficTarget is one entry of a traffic block, in spec (desired) and status (resolved) alike.
type TrafficTarget struct {
	Tag               string `json:"tag,omitempty"`
	RevisionName      string `json:"revisionName,omitempty"`
	ConfigurationName string `json:"configurationName,omitempty"`
	LatestRevision    *bool  `json:"latestRevision,omitempty"`
	Percent           *int64 `json:"percent,omitempty"`
	// URL is output only: set in status for tagged entries.
	URL string `json:"url,omitempty"`
}

// Status is the part every kind's status shares.
type Status struct {
	ObservedGeneration int64       `json:"observedGeneration,omitempty"`
	Conditions         []Condition `json:"conditions,omitempty"`
}

// ConditionType names a condition.
type ConditionType string

// Condition types, as Knative names them.
const (
	ConditionReady               ConditionType = "Ready"
	ConditionConfigurationsReady ConditionType = "ConfigurationsReady"
	ConditionRoutesReady         ConditionType = "RoutesReady"
	ConditionAllTrafficAssigned  ConditionType = "AllTrafficAssigned"
	ConditionResourcesAvailable  ConditionType = "ResourcesAvailable"
)

// Condition is Knative's condition shape (knative.dev/pkg/apis.Condition).
type Condition struct {
	Type               ConditionType          `json:"type"`
	Status             corev1.ConditionStatus `json:"status"`
	Severity           string                 `json:"severity,omitempty"`
	LastTransitionTime metav1.Time            `json:"lastTransitionTime,omitempty"`
	Reason             string                 `json:"reason,omitempty"`
	Message            string                 `json:"message,omitempty"`
}

// Annotations and labels sluice reads or writes.
const (
	// AnnotationEndpoints lists a revision's static instances, "host:port,host:port".
	AnnotationEndpoints = "sluice.dev/endpoints"
	// AnnotationAppliedFrom marks an object as applied from a watched directory (its absolute
	// path), which makes the watcher responsible for deleting it when it leaves the directory.
	AnnotationAppliedFrom = "sluice.dev/applied-from"
	// AnnotationRolloutDuration spreads a latestRevision move over time (not yet implemented).
	AnnotationRolloutDuration = "serving.knative.dev/rollout-duration"
	// LabelVisibility set to VisibilityClusterLocal keeps a Service off the external listener.
	LabelVisibility        = "networking.knative.dev/visibility"
	VisibilityClusterLocal = "cluster-local"

	LabelService                 = "serving.knative.dev/service"
	LabelConfiguration           = "serving.knative.dev/configuration"
	LabelRoute                   = "serving.knative.dev/route"
	LabelConfigurationGeneration = "serving.knative.dev/configurationGeneration"
)
