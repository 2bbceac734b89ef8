// Package wire holds the contracts between sluice's control plane and its data plane (Envoy
// gateways, proxyless gRPC clients, activators): how a node says what it is, the metadata the
// control plane puts on an activator's load assignments, and the request and response headers
// gateways, clients and activators exchange. Each is defined here once, so the side that writes
// it and the side that reads it cannot drift apart.
//
// It is a leaf: it imports nothing but the standard library, so every sluice package, and any
// program that talks to sluice's data plane, may import it for the price of a few constants.
package wire
