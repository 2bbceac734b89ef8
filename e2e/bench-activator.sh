#!/usr/bin/env bash
# The activator's cost, in one run against one helloworld backend:
#   - latency (p50/p90/p99) and throughput of direct / activator / nginx (plain reverse proxy),
#     measured in alternating rounds, reported as medians of per-round pairs against direct;
#   - cold start: time to first byte through the activator from zero minus the app's own start
#     time (exec to first 200), paired sample by sample.
# Goals (from the issue): activator added p50 ≤ 200µs, throughput ≥ 70% of direct, cold-start
# overhead ≤ 20 ms at p99. They are reported, not enforced: the script fails only on errors.
#
#   e2e/bench-activator.sh                      # about 4 minutes (+ ~15 s per cold-start sample)
#   ROUNDS=7 DURATION=10s CONC=32 COLD_N=20 e2e/bench-activator.sh
#
# Knobs (environment): ROUNDS (5), DURATION (5s, measured per target per round), WARMUP (1s),
# CONC (16 connections per target), COLD_N (10 cold-start samples), NGINX_WORKERS (auto: one per
# core, as the activator's Go runtime uses every core), AA (1: also measure direct a second time,
# "direct-2", whose distance from direct is the noise floor of the run), BASE_PORT (19470).
#
# The activator is measured when `sluice serve` runs revisions as local processes (it then has
# --scale-to-zero-grace-period); until then the script measures direct and nginx against a
# helloworld it starts itself, and says so.
#
# nginx: Debian's package is installed with apt-get when `nginx` is missing; it runs from a
# generated config in a temp dir (keep-alive upstream, access_log off), never as the system
# service. Only loopback ports are used; everything started is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${ROUNDS:-5}
duration=${DURATION:-5s}
warmup=${WARMUP:-1s}
conc=${CONC:-16}
cold_n=${COLD_N:-10}
nginx_workers=${NGINX_WORKERS:-auto}
aa=${AA:-1}
base=${BASE_PORT:-19470}
api=127.0.0.1:$base
xds=127.0.0.1:$((base + 1))
activator_addr=127.0.0.1:8012 # serve's default; replaced below when serve has a flag for it
nginx_port=$((base + 4))
own_backend_port=$((base + 5))

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
die() { echo "bench-activator: $*" >&2; exit 1; }

echo "== building sluice, helloworld and loadgen"
go build -o "$work/sluice" ./cmd/sluice
go build -o "$work/helloworld" ./examples/helloworld
go build -o "$work/loadgen" ./e2e/loadgen

if ! command -v nginx > /dev/null; then
  echo "== installing nginx (Debian package nginx-light, else nginx)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq > /dev/null
  apt-get install -y -qq --no-install-recommends nginx-light > /dev/null 2>&1 ||
    apt-get install -y -qq --no-install-recommends nginx > /dev/null
fi

# wait_http URL [curl args...]: until a 200, for at most 30 s.
wait_http() {
  local url=$1 deadline=$((SECONDS + 30)); shift
  while ((SECONDS < deadline)); do curl -fs -o /dev/null --max-time 5 "$@" "$url" && return 0; sleep 0.05; done
  return 1
}

# instance_pids TARGET: the helloworld processes sluice started for this run with TARGET=...,
# found by the marker variable their Service gives them (so nothing else on the machine matches).
instance_pids() {
  local p
  for p in /proc/[0-9]*; do
    tr '\0' '\n' < "$p/environ" 2> /dev/null | grep -qx "SLUICE_BENCH_RUN=$work" || continue
    tr '\0' '\n' < "$p/environ" 2> /dev/null | grep -qx "TARGET=$1" && echo "${p#/proc/}"
  done
  return 0
}
env_of() { tr '\0' '\n' < "/proc/$1/environ" | sed -n "s/^$2=//p"; }

with_activator=0
if "$work/sluice" serve --help 2>&1 | grep -q -- '--scale-to-zero-grace-period'; then with_activator=1; fi

targets=()
if [ $with_activator = 1 ]; then
  serve_flags=(--data-dir "$work/data" --api-addr "$api" --xds-addr "$xds"
    --envoy-external-addr 127.0.0.1:$((base + 2)) --envoy-internal-addr 127.0.0.1:$((base + 3))
    --scale-to-zero-grace-period 1s)
  # Another sluice on this machine may hold the default activator port: use ours when we can say so.
  act_flag=$("$work/sluice" serve --help 2>&1 | grep -oE -- '--activator-(addr|listen)' | head -1 || true)
  if [ -n "$act_flag" ]; then activator_addr=127.0.0.1:$((base + 6)); serve_flags+=("$act_flag" "$activator_addr"); fi
  echo "== sluice serve ${serve_flags[*]}"
  "$work/sluice" serve "${serve_flags[@]}" > "$work/serve.log" 2>&1 &
  serve_pid=$!; pids+=($serve_pid)
  wait_http "http://$api/healthz" || { cat "$work/serve.log"; die "sluice serve did not start"; }

  # hello: always one instance, activator always in the path (the latency/throughput backend).
  # cold: scales to zero 6 s after its last request (+1 s grace), for the cold-start samples.
  cat > "$work/services.yaml" << EOF
apiVersion: serving.knative.dev/v1
kind: Service
metadata: {name: hello, namespace: default}
spec:
  template:
    metadata:
      annotations:
        autoscaling.knative.dev/min-scale: "1"
        autoscaling.knative.dev/target-burst-capacity: "-1"
    spec:
      containers:
      - command: ["$work/helloworld"]
        env: [{name: TARGET, value: bench}, {name: SLUICE_BENCH_RUN, value: "$work"}]
---
apiVersion: serving.knative.dev/v1
kind: Service
metadata: {name: cold, namespace: default}
spec:
  template:
    metadata:
      annotations:
        autoscaling.knative.dev/min-scale: "0"
        autoscaling.knative.dev/window: "6s"
        autoscaling.knative.dev/target-burst-capacity: "-1"
    spec:
      containers:
      - command: ["$work/helloworld"]
        env: [{name: TARGET, value: cold}, {name: SLUICE_BENCH_RUN, value: "$work"}]
EOF
  "$work/sluice" --server "http://$api" apply -f "$work/services.yaml"
  hello_headers=(-H 'Knative-Serving-Namespace: default' -H 'Knative-Serving-Revision: hello-00001')
  wait_http "http://$activator_addr/" "${hello_headers[@]}" ||
    { tail -20 "$work/serve.log"; die "hello-00001 does not answer through the activator at $activator_addr"; }
  pid=$(instance_pids bench | head -1)
  [ -n "$pid" ] || die "no helloworld instance of hello-00001 found"
  backend_port=$(env_of "$pid" PORT)
  echo "== backend: hello-00001's instance, pid $pid, port $backend_port; activator at $activator_addr"
else
  echo "== backend: a helloworld of our own on port $own_backend_port"
  echo "   (activator NOT measured: this sluice serve runs no local revisions yet, so no activator learns an instance)"
  PORT=$own_backend_port HOST=127.0.0.1 TARGET=bench "$work/helloworld" 2> "$work/helloworld.log" &
  pids+=($!)
  backend_port=$own_backend_port
  wait_http "http://127.0.0.1:$backend_port/" || die "helloworld did not start"
fi

echo "== nginx: worker_processes $nginx_workers, keep-alive upstream 127.0.0.1:$backend_port, listening on 127.0.0.1:$nginx_port"
mkdir -p "$work/nginx/tmp"
cat > "$work/nginx/nginx.conf" << EOF
worker_processes $nginx_workers;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx/tmp/body;
  proxy_temp_path $work/nginx/tmp/proxy;
  fastcgi_temp_path $work/nginx/tmp/fastcgi;
  uwsgi_temp_path $work/nginx/tmp/uwsgi;
  scgi_temp_path $work/nginx/tmp/scgi;
  keepalive_requests 1000000;
  upstream backend {
    server 127.0.0.1:$backend_port;
    keepalive 256;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:$nginx_port;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
nginx -t -q -p "$work/nginx" -e "$work/nginx/error.log" -c "$work/nginx/nginx.conf"
nginx -p "$work/nginx" -e "$work/nginx/error.log" -c "$work/nginx/nginx.conf" -g 'daemon off;' &
pids+=($!)
wait_http "http://127.0.0.1:$nginx_port/" || { cat "$work/nginx/error.log"; die "nginx did not start"; }

echo "== machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $(uname -r), $(go version | cut -d' ' -f3), $(nginx -v 2>&1 | sed 's/.*: //')"
args=(-target "direct=http://127.0.0.1:$backend_port/")
[ $with_activator = 1 ] && args+=(-target "activator=http://$activator_addr/"
  -H 'activator:Knative-Serving-Namespace: default' -H 'activator:Knative-Serving-Revision: hello-00001')
args+=(-target "nginx=http://127.0.0.1:$nginx_port/")
[ "$aa" = 1 ] && args+=(-target "direct-2=http://127.0.0.1:$backend_port/")
status=0
"$work/loadgen" bench "${args[@]}" -baseline direct -goal-target activator \
  -c "$conc" -d "$duration" -warmup "$warmup" -rounds "$rounds" -expect 'Hello bench!' || status=$?

if [ $with_activator = 1 ]; then
  echo "== cold start: $cold_n samples, each: wait for cold-00001 at zero, the app's own start, then one request through the activator"
  cold_headers=(-H 'Knative-Serving-Namespace: default' -H 'Knative-Serving-Revision: cold-00001')
  : > "$work/app.txt"; : > "$work/first.txt"
  for i in $(seq "$cold_n"); do
    for _ in $(seq 600); do [ -z "$(instance_pids cold)" ] && break; sleep 0.1; done
    [ -z "$(instance_pids cold)" ] || die "cold-00001 did not scale to zero within 60 s"
    kill -0 "$serve_pid" 2> /dev/null || { tail -20 "$work/serve.log"; die "sluice serve exited"; }
    # Let the activator hear over xDS that the instance is gone, so the request finds zero.
    sleep 1
    app=$("$work/loadgen" appstart -cmd "$work/helloworld") || die "sample $i: app start failed"
    first=$("$work/loadgen" firstbyte -url "http://$activator_addr/" "${cold_headers[@]}") ||
      { tail -20 "$work/serve.log"; die "sample $i: the request from zero failed"; }
    echo "$app" >> "$work/app.txt"; echo "$first" >> "$work/first.txt"
    echo "  sample $i/$cold_n: app start $app, first byte from zero $first"
  done
  "$work/loadgen" coldstats -app "$work/app.txt" -first "$work/first.txt"
  "$work/sluice" --server "http://$api" get revisions || true
fi
echo "== load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
exit $status
