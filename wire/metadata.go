package wire

// Activator metadata: the control plane puts it in the filter_metadata of the one locality of a
// revision's activator load assignment (a ClusterLoadAssignment itself has no metadata), and the
// activator reads it to forward the revision's requests.
const (
	// MetadataKey is the filter_metadata key of the fields below.
	MetadataKey = "sluice.dev"
	// MetadataContainerConcurrency is a number: the most requests one instance may have in
	// flight; 0 is unlimited.
	MetadataContainerConcurrency = "containerConcurrency"
	// MetadataTimeoutSeconds is a number: the revision's request timeout.
	MetadataTimeoutSeconds = "timeoutSeconds"
	// MetadataProtocol is a string, ProtocolHTTP1 or ProtocolH2C: what the instances speak.
	MetadataProtocol = "protocol"
	// MetadataProxied is a bool: gateways send the revision's requests to the activator. A control
	// plane from before the field leaves it out, which means false.
	MetadataProxied = "proxied"
)

// Values of MetadataProtocol.
const (
	ProtocolHTTP1 = "http1"
	// ProtocolH2C is cleartext HTTP/2 with prior knowledge (gRPC backends).
	ProtocolH2C = "h2c"
)
