package wire

// Knative's request headers, as sluice uses them.
const (
	// HeaderRevision and HeaderNamespace name a request's revision. Envoy gateways set them on
	// every split (overwriting what a client sent), and the activator routes by them. Proxyless
	// gRPC clients do not set them; the activator routes their requests by authority.
	HeaderRevision  = "Knative-Serving-Revision"
	HeaderNamespace = "Knative-Serving-Namespace"
	// HeaderTag selects a tag's route on a service's main host.
	HeaderTag = "Knative-Serving-Tag"
	// HeaderTagLower is HeaderTag lowercased: the name the control plane's route header matchers
	// carry, and the gRPC metadata key clients send (header names are case-insensitive on the
	// wire, and gRPC matches against lowercased metadata keys).
	HeaderTagLower = "knative-serving-tag"
)

// HeaderRefused is the response header that says why the activator answered 503 or 504
// itself; its value is one of the Refused reasons.
const HeaderRefused = "X-Sluice-Activator"

// Values of HeaderRefused.
const (
	// RefusedQueueFull: the revision's queue holds as many requests as it may (503).
	RefusedQueueFull = "queue-full"
	// RefusedQueueBytesFull: the revision's queue holds as many request bytes as it may (503).
	RefusedQueueBytesFull = "queue-bytes-full"
	// RefusedQueueTimeout: no instance was ready within the queue timeout (503).
	RefusedQueueTimeout = "queue-timeout"
	// RefusedRevisionTimeout: the request outlived its revision's timeoutSeconds (504).
	RefusedRevisionTimeout = "revision-timeout"
)
