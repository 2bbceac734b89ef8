#!/usr/bin/env bash
# The one test command: every package, the end-to-end suite included, under the race detector.
# Extra arguments go to `go test` (e.g. ./test.sh -run TestCanary ./e2e/).
set -euo pipefail
cd "$(dirname "$0")"
if [ $# -eq 0 ]; then set -- ./...; fi
exec go test -race -count=1 -timeout 45m "$@"
