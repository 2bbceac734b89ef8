package v1

import (
	"encoding/json"
	"fmt"
	"hash/fnv"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ContentVersion is the resourceVersion sluice answers for o: a hash of its metadata and spec,
// status left out. Kubernetes keeps a counter per write instead; a hash needs no storage and
// survives restarts, and it serves the one purpose clients have for a resourceVersion here: to
// apply a change only if nobody changed the object since they read it. Status is left out
// because status updates (readiness, scale) are sluice's own and never race a user's change.
func ContentVersion(o Object) string {
	meta := metav1.ObjectMeta{}
	var spec any
	switch o := o.(type) {
	case *Service:
		meta, spec = o.ObjectMeta, o.Spec
	case *Configuration:
		meta, spec = o.ObjectMeta, o.Spec
	case *Route:
		meta, spec = o.ObjectMeta, o.Spec
	case *Revision:
		meta, spec = o.ObjectMeta, o.Spec
	default:
		panic(fmt.Sprintf("v1.ContentVersion: unknown object type %T", o))
	}
	meta.ResourceVersion = "" // what a client sends back must not change what it is compared with
	h := fnv.New64a()
	if err := json.NewEncoder(h).Encode(struct {
		Meta metav1.ObjectMeta `json:"m"`
		Spec any               `json:"s"`
	}{meta, spec}); err != nil {
		panic(fmt.Sprintf("v1.ContentVersion: encode %s: %v", Describe(o), err))
	}
	return fmt.Sprintf("%016x", h.Sum64())
}

// IsContentVersion says whether rv has the form ContentVersion gives: 16 lowercase hex digits.
func IsContentVersion(rv string) bool {
	if len(rv) != 16 {
		return false
	}
	for _, c := range rv {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
