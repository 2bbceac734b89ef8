package envoy

import _ "embed"

// BootstrapYAML is bootstrap.yaml, so the binary can print a gateway's bootstrap without a
// checkout (e.g. `sluice envoy-bootstrap > envoy.yaml`).
//
//go:embed bootstrap.yaml
var BootstrapYAML []byte
