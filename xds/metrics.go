package xds

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	nacks       *prometheus.CounterVec // type, node_kind
	streams     *prometheus.GaugeVec   // node_kind, protocol
	sentBytes   *prometheus.CounterVec // type, node_kind
	resources   *prometheus.GaugeVec   // cache
	updateBytes prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_xds_nacks_total",
			Help: "xDS responses rejected by clients, by resource type and node kind.",
		}, []string{"type", "node_kind"}),
		streams: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_xds_connected_streams",
			Help: "Open xDS streams whose node has identified itself, by node kind and protocol (sotw, delta).",
		}, []string{"node_kind", "protocol"}),
		sentBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_xds_sent_bytes_total",
			Help: "Encoded size of the xDS responses sent, by resource type and node kind.",
		}, []string{"type", "node_kind"}),
		resources: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_xds_resources",
			Help: "Resources held, by cache (type, and node kind for listeners).",
		}, []string{"cache"}),
		updateBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_xds_updated_bytes_total",
			Help: "Encoded size of the resources added or changed by updates.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.nacks, m.streams, m.sentBytes, m.resources, m.updateBytes} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("registering xds metrics: %w", err)
	}
	return m, nil
}

// typeLabel keeps metric labels short and readable.
func typeLabel(typeURL string) string {
	switch typeURL {
	case typeCluster:
		return "cluster"
	case typeEndpoint:
		return "endpoint"
	case typeRoute:
		return "route"
	case typeListener:
		return "listener"
	}
	return "other"
}
