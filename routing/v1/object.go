package v1

import (
	"encoding/json"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Object is any of *Service, *Configuration, *Route and *Revision.
type Object interface {
	metav1.Object
	GetObjectKind() schema.ObjectKind
}

var (
	_ Object = (*Service)(nil)
	_ Object = (*Configuration)(nil)
	_ Object = (*Route)(nil)
	_ Object = (*Revision)(nil)
)

// KindOf names o's kind from its Go type, so that objects built in code without TypeMeta are
// still named correctly in errors.
func KindOf(o Object) string {
	switch o.(type) {
	case *Service:
		return KindService
	case *Configuration:
		return KindConfiguration
	case *Route:
		return KindRoute
	case *Revision:
		return KindRevision
	}
	return fmt.Sprintf("%T", o)
}

// Describe names an object the way errors do: "Service default/hello".
func Describe(o Object) string {
	return KindOf(o) + " " + o.GetNamespace() + "/" + o.GetName()
}

// Clone returns a deep copy of o with its TypeMeta filled in. A JSON round trip is the copy:
// every field is JSON-tagged, and hand-written DeepCopy methods would silently miss fields
// added later.
func Clone[T Object](o T) T {
	data, err := json.Marshal(o)
	if err != nil {
		panic(fmt.Sprintf("v1.Clone: marshal %s: %v", Describe(o), err))
	}
	var out T
	out = newOf(o).(T)
	if err := json.Unmarshal(data, out); err != nil {
		panic(fmt.Sprintf("v1.Clone: unmarshal %s: %v", Describe(o), err))
	}
	setTypeMeta(out)
	return out
}

func newOf(o Object) Object {
	switch o.(type) {
	case *Service:
		return &Service{}
	case *Configuration:
		return &Configuration{}
	case *Route:
		return &Route{}
	case *Revision:
		return &Revision{}
	}
	panic(fmt.Sprintf("v1: unknown object type %T", o))
}

func setTypeMeta(o Object) {
	o.GetObjectKind().SetGroupVersionKind(schema.FromAPIVersionAndKind(APIVersion, KindOf(o)))
}
