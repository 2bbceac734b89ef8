package xds

import (
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Envoy's gateway route configurations hold a virtual host per host of every
// service: 30,000 at 10,000 services, 12 MB encoded. Encoding one with
// protobuf-go takes about 250 ms, and go-control-plane would encode it a second
// time to send it, so one traffic change would cost half a second. But a change
// replaces one or two virtual hosts and keeps the others' pointers (the
// translator memoises them, and protos are never mutated), so the encoding of
// every other virtual host is the one of last time.
//
// vhostEncoder keeps, per large route configuration, its virtual hosts' encoded
// records, and builds the encoding of the next version by reusing the records of
// unchanged pointers: a copy of 12 MB instead of walking a million messages. The
// result is byte for byte what a deterministic Marshal gives (a message's known
// fields in field order, each repeated element as its own record), so versions
// are the same content hashes either way; TestEncodeRouteConfigurationMatchesMarshal
// checks it. go-control-plane is handed a copy of the configuration carrying those
// bytes as unknown fields after its name, which protobuf-go writes out verbatim,
// so it costs a copy to send too.
type vhostEncoder struct {
	last map[string]*encodedRC // by route configuration name; guarded by Server.updateMu
}

type encodedRC struct {
	vhosts []*routev3.VirtualHost
	recs   [][]byte // recs[i] is the field-2 record (tag, length, message) of vhosts[i]
}

// minEncodedVHosts is the size from which the records are kept: gRPC's per-host
// configurations have one virtual host and are cheap to encode whole.
const minEncodedVHosts = 64

const rcVirtualHostsField = 2 // envoy.config.route.v3.RouteConfiguration.virtual_hosts

// encode returns the deterministic encoding of r and the resource to give
// go-control-plane, or ok false when r is not a large route configuration with
// only a name and virtual hosts (the caller then marshals it as usual).
func (e *vhostEncoder) encode(name string, r types.Resource) (b []byte, wire types.Resource, ok bool, err error) {
	rc, isRC := r.(*routev3.RouteConfiguration)
	if !isRC || len(rc.GetVirtualHosts()) < minEncodedVHosts || !onlyNameAndVirtualHosts(rc) {
		if e.last != nil {
			delete(e.last, name)
		}
		return nil, nil, false, nil
	}
	prev := e.last[name]
	var index map[*routev3.VirtualHost]int // built on the first pointer not found in order
	next := &encodedRC{vhosts: rc.VirtualHosts, recs: make([][]byte, len(rc.VirtualHosts))}
	size := 0
	j := 0
	for i, vh := range rc.VirtualHosts {
		var rec []byte
		if prev != nil {
			// The lists are sorted by host and mostly the same, so the old
			// record is usually at the next position.
			if j < len(prev.vhosts) && prev.vhosts[j] == vh {
				rec = prev.recs[j]
				j++
			} else {
				if index == nil {
					index = make(map[*routev3.VirtualHost]int, len(prev.vhosts))
					for k, v := range prev.vhosts {
						index[v] = k
					}
				}
				if k, found := index[vh]; found {
					rec, j = prev.recs[k], k+1
				}
			}
		}
		if rec == nil {
			m, err := cache.MarshalResource(vh)
			if err != nil {
				return nil, nil, false, err
			}
			rec = protowire.AppendTag(nil, rcVirtualHostsField, protowire.BytesType)
			rec = protowire.AppendBytes(rec, m)
		}
		next.recs[i] = rec
		size += len(rec)
	}
	head, err := cache.MarshalResource(&routev3.RouteConfiguration{Name: rc.GetName()})
	if err != nil {
		return nil, nil, false, err
	}
	b = make([]byte, 0, len(head)+size)
	b = append(b, head...)
	for i, rec := range next.recs {
		off := len(b)
		b = append(b, rec...)
		// Remember the record as part of b, which the cache holds anyway (as
		// the unknown fields of w), rather than keep a second copy of it.
		next.recs[i] = b[off:len(b):len(b)]
	}
	w := &routev3.RouteConfiguration{Name: rc.GetName()}
	w.ProtoReflect().SetUnknown(b[len(head):])
	if e.last == nil {
		e.last = map[string]*encodedRC{}
	}
	e.last[name] = next
	return b, w, true, nil
}

// forget drops the records of a configuration that is gone.
func (e *vhostEncoder) forget(name string) { delete(e.last, name) }

// onlyNameAndVirtualHosts reports whether the encoding of rc is its name
// followed by its virtual hosts, nothing else set.
func onlyNameAndVirtualHosts(rc *routev3.RouteConfiguration) bool {
	m := rc.ProtoReflect()
	if len(m.GetUnknown()) > 0 {
		return false
	}
	ok := true
	m.Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if n := fd.Number(); n != 1 && n != rcVirtualHostsField {
			ok = false
		}
		return ok
	})
	return ok
}
