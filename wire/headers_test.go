package wire

import (
	"strings"
	"testing"
)

// The lowercase spelling is a constant so that it can be one in the packages that use it; it
// must stay HeaderTag's.
func TestHeaderTagLower(t *testing.T) {
	if HeaderTagLower != strings.ToLower(HeaderTag) {
		t.Errorf("HeaderTagLower %q is not HeaderTag %q lowercased", HeaderTagLower, HeaderTag)
	}
}
