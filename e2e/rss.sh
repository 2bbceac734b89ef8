#!/usr/bin/env bash
# Steady-state memory of `sluice serve` holding N services × 2 revisions (80/20 split, static
# endpoints, no tags), as the README reports it: RSS right after loading them through the API,
# after the Go runtime's periodic GC and scavenging (it runs after two idle minutes), and again
# after a restart that loads them from disk.
#
#   e2e/rss.sh [N]        # default 10000; takes about 9 minutes (IDLE=seconds shortens the waits)
#
# Only loopback ports are used; everything it starts is stopped at the end.
set -euo pipefail
n=${1:-10000}
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/sluice" ./cmd/sluice

# N services, each applied at generation 1 then 2 (two revisions), 500 services per file.
mkdir "$work/load"
for ((i = 0; i < n; i++)); do
  f=$(printf '%s/load/batch-%03d.yaml' "$work" $((i / 500)))
  for gen in 1 2; do
    printf -- '---\napiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: svc-%05d\nspec:\n  template:\n    metadata:\n      name: svc-%05d-v%d\n      annotations:\n        sluice.dev/endpoints: "10.%d.%d.%d:8080"\n    spec:\n      containers:\n      - image: ghcr.io/knative/helloworld-go:latest\n        env: [{name: TARGET, value: "v%d"}]\n' \
      "$i" "$i" "$gen" "$gen" $((i >> 8 & 255)) $((i & 255)) "$gen" >> "$f"
    if [ "$gen" = 2 ]; then
      printf '  traffic:\n  - {revisionName: svc-%05d-v1, percent: 80}\n  - {revisionName: svc-%05d-v2, percent: 20}\n' "$i" "$i" >> "$f"
    fi
  done
done

api=127.0.0.1:19390
serve() { "$work/sluice" serve --data-dir "$work/data" --api-addr $api --xds-addr 127.0.0.1:19391 \
  --envoy-external-addr 127.0.0.1:19392 --envoy-internal-addr 127.0.0.1:19393 > "$work/serve.log" 2>&1 & }
rss() { awk '/^VmRSS/{printf "%d MB", $2/1024}' "/proc/$1/status"; }
wait_api() { for _ in $(seq 100); do curl -fs "http://$api/healthz" > /dev/null && return; sleep 0.1; done; echo "sluice did not start"; cat "$work/serve.log"; exit 1; }

serve; pid=$!; wait_api
start=$(date +%s)
for f in "$work"/load/*.yaml; do "$work/sluice" --server "http://$api" apply -f "$f" > /dev/null; done
echo "services=$n loaded through the API in $(( $(date +%s) - start )) s"
echo "  right after loading:        $(rss $pid)"
sleep "${IDLE:-200}"
echo "  steady (after ${IDLE:-200} s idle):  $(rss $pid)"
kill $pid; wait $pid 2>/dev/null || true

serve; pid=$!; wait_api
sleep 5
echo "  after a restart (5 s):      $(rss $pid)"
sleep "${IDLE:-180}"
echo "  after a restart (+${IDLE:-180} s):   $(rss $pid)"
