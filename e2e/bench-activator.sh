#!/usr/bin/env bash
# The activator's cost, in one run against one helloworld backend:
#   - latency (p50/p90/p99) and throughput of direct / activator / nginx (plain reverse proxy) /
#     go-proxy (net/http/httputil's reverse proxy, bare: the floor for a Go proxy) / tcp-relay
#     (bytes copied both ways, no HTTP: the ceiling for any proxy hop on this machine), measured in
#     alternating rounds, reported as medians of per-round pairs against direct, with the CPU time
#     per request of the load generator, the backend and each proxy;
#     The rounds run in two layouts: "shared", every process on every core, where a proxy's CPU
#     is taken from the load generator and the backend; and "split", the proxies on the upper
#     half of the cores and the load generator and the backend on the lower half (taskset), where
#     the proxy under test has cores of its own, as an activator has in production;
#   - cold start: time to first byte through the activator from zero minus the app's own start
#     time (exec to first 200), paired sample by sample.
# Goals (from the issue): activator added p50 ≤ 200µs, throughput ≥ 70% of direct, cold-start
# overhead ≤ 20 ms at p99. They are reported, not enforced: the script fails only on errors.
#
#   e2e/bench-activator.sh                      # about 8 minutes (+ ~15 s per cold-start sample)
#   ROUNDS=7 DURATION=10s CONC=32 COLD_N=20 e2e/bench-activator.sh
#   CONC=1 ROUNDS=5 DURATION=4s LAYOUT=shared e2e/bench-activator.sh   # added latency alone
#
# Knobs (environment): ROUNDS (5), DURATION (5s, measured per target per round), WARMUP (1s),
# CONC (16 connections per target), COLD_N (10 cold-start samples), NGINX_WORKERS (auto: one per
# core, as the activator's Go runtime uses every core), AA (1: also measure direct a second time,
# "direct-2", whose distance from direct is the noise floor of the run), GOPROXY (1: also measure
# go-proxy), RELAY (1: also measure tcp-relay), LAYOUT (both, shared or split), BASE_PORT (19470: the script uses BASE_PORT..BASE_PORT+7
# and checks they are free; other sluices on this machine hold serve's defaults, so none of them is used).
#
# `sluice serve` runs both revisions as local processes (their container has a command) with its
# in-process activator on --activator-addr. The script learns the instance's port from the app's
# own log line ("helloworld listening addr=...:PORT ... pid=N", via `sluice logs`) and when a
# revision is at zero from the API (status.actualReplicas and status.scale.readyReplicas both 0).
#
# nginx and jq: Debian's packages are installed with apt-get when missing; nginx runs from a
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
goproxy=${GOPROXY:-1}
relay=${RELAY:-1}
layout=${LAYOUT:-both}
case $layout in
  shared | both | split) ;;
  *) echo "bench-activator: LAYOUT=$layout: want shared, split or both" >&2; exit 2 ;;
esac
# The CPUs this script may use (inside a cpuset they need not start at 0), one per line.
allowed_cpus() {
  local part
  for part in $(taskset -pc $$ | sed 's/.*: //; s/,/ /g'); do
    if [[ $part == *-* ]]; then seq "${part%-*}" "${part#*-}"; else echo "$part"; fi
  done
}
mapfile -t cpus < <(allowed_cpus)
cores=${#cpus[@]}
all_cpus=$(IFS=,; echo "${cpus[*]}")
# For the split layout: low and high, the CPUs of the first and of the second half of the
# physical cores (lscpu's CORE), so that no proxy shares a core, through hyperthread siblings,
# with the load generator or the backend. With one physical core the CPUs themselves are split.
split_cpus() {
  local -A core_of=()
  local cpu core i
  if command -v lscpu > /dev/null; then
    while IFS=, read -r cpu core; do core_of[$cpu]=$core; done < <(lscpu -p=CPU,CORE | grep -v '^#')
  fi
  local -a phys
  mapfile -t phys < <(for cpu in "${cpus[@]}"; do echo "${core_of[$cpu]:-cpu$cpu}"; done | sort -V -u)
  local -A lower=()
  split_note=""
  if ((${#phys[@]} >= 2)); then
    for ((i = 0; i < ${#phys[@]} / 2; i++)); do lower[${phys[$i]}]=1; done
  else
    split_note=" (one physical core: the halves are hyperthread siblings)"
  fi
  low="" high=""
  for ((i = 0; i < cores; i++)); do
    cpu=${cpus[$i]}
    core=${core_of[$cpu]:-cpu$cpu}
    if [[ -n ${lower[$core]:-} ]] || { [[ -n $split_note ]] && ((i < cores / 2)); }; then
      low+=${low:+,}$cpu
    else
      high+=${high:+,}$cpu
    fi
  done
}
if [[ $layout != shared ]]; then
  ((cores >= 2)) || { echo "bench-activator: LAYOUT=$layout needs 2 CPUs or more to split; this script may use $cores (use LAYOUT=shared)" >&2; exit 2; }
  split_cpus
fi
base=${BASE_PORT:-19470}
api=127.0.0.1:$base
xds=127.0.0.1:$((base + 1))
envoy_external=127.0.0.1:$((base + 2))
envoy_internal=127.0.0.1:$((base + 3))
nginx_port=$((base + 4))
activator_addr=127.0.0.1:$((base + 5))
goproxy_port=$((base + 6))
relay_port=$((base + 7))

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
die() { echo "bench-activator: $*" >&2; exit 1; }

# A port someone else holds would make us measure their server, or fail half-way: refuse early.
for port in $(seq "$base" $((base + 7))); do
  if (exec 3<> "/dev/tcp/127.0.0.1/$port") 2> /dev/null; then
    die "127.0.0.1:$port is in use; pick free ports with BASE_PORT (it uses BASE_PORT..BASE_PORT+7)"
  fi
done

echo "== building sluice, helloworld and loadgen"
go build -o "$work/sluice" ./cmd/sluice
go build -o "$work/helloworld" ./examples/helloworld
go build -o "$work/loadgen" ./e2e/loadgen
# Not `| grep -q`: grep exits at the first match and, under pipefail, serve's SIGPIPE fails the test.
serve_help=$("$work/sluice" serve --help 2>&1)
grep -- '--activator-addr' <<<"$serve_help" >/dev/null ||
  die "this sluice serve has no --activator-addr: it runs no local revisions, so there is no activator to measure"

missing=()
command -v nginx > /dev/null || missing+=(nginx-light)
command -v jq > /dev/null || missing+=(jq)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]} (Debian packages)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq > /dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
fi

# wait_http URL [curl args...]: until a 200, for at most 30 s.
wait_http() {
  local url=$1 deadline=$((SECONDS + 30)); shift
  while ((SECONDS < deadline)); do curl -fs -o /dev/null --max-time 5 "$@" "$url" && return 0; sleep 0.05; done
  return 1
}

sluice() { "$work/sluice" --server "http://$api" "$@"; }

# listening REV: the app's "helloworld listening" log lines of REV's instances, oldest first.
listening() { sluice logs "$1" | grep 'helloworld listening' || true; }
# field NAME: the value of NAME=... in a log line on stdin.
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }

# at_zero REV: whether the API says REV has neither instances nor ready ones (absent fields are 0).
at_zero() {
  local s
  s=$(curl -fs "http://$api/api/v1/namespaces/default/revisions/$1" |
    jq -r '"\(.status.actualReplicas // 0) \(.status.scale.readyReplicas // 0)"') || return 1
  [ "$s" = "0 0" ]
}

serve_flags=(--data-dir "$work/data" --api-addr "$api" --xds-addr "$xds"
  --envoy-external-addr "$envoy_external" --envoy-internal-addr "$envoy_internal"
  --activator-addr "$activator_addr" --scale-to-zero-grace-period 1s --autoscaler-tick-interval 1s)
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
      containerConcurrency: 0
      containers:
      - command: ["$work/helloworld"]
        env: [{name: TARGET, value: bench}]
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
      containerConcurrency: 0
      containers:
      - command: ["$work/helloworld"]
        env: [{name: TARGET, value: cold}]
EOF
sluice apply -f "$work/services.yaml"
hello_headers=(-H 'Knative-Serving-Namespace: default' -H 'Knative-Serving-Revision: hello-00001')
wait_http "http://$activator_addr/" "${hello_headers[@]}" ||
  { tail -20 "$work/serve.log"; die "hello-00001 does not answer through the activator at $activator_addr"; }
line=$(listening hello-00001 | tail -1)
backend_port=$(field addr <<< "$line" | sed 's/.*://')
pid=$(field pid <<< "$line")
[ -n "$backend_port" ] && [ -n "$pid" ] || die "no 'helloworld listening' line in sluice logs hello-00001"
kill -0 "$pid" 2> /dev/null || die "hello-00001's instance (pid $pid) is not running"
[ "$(listening hello-00001 | wc -l)" = 1 ] || die "hello-00001 has had more than one instance: $(listening hello-00001)"
echo "== backend: hello-00001's instance, pid $pid, port $backend_port; activator at $activator_addr"

# nginx_conf WORKERS: the config, with WORKERS worker processes.
nginx_conf() {
  cat > "$work/nginx/nginx.conf" << EOF
worker_processes $1;
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
}
# nginx_workers_of: the master and its workers, comma-separated: the workers do the proxying, the
# master's share is near zero.
nginx_workers_of() { local w; w=$(pgrep -d, -P "$nginx_pid" || true); echo "$nginx_pid${w:+,$w}"; }
echo "== nginx: worker_processes $nginx_workers, keep-alive upstream 127.0.0.1:$backend_port, listening on 127.0.0.1:$nginx_port"
mkdir -p "$work/nginx/tmp"
nginx_conf "$nginx_workers"
nginx -t -q -p "$work/nginx" -e "$work/nginx/error.log" -c "$work/nginx/nginx.conf"
nginx -p "$work/nginx" -e "$work/nginx/error.log" -c "$work/nginx/nginx.conf" -g 'daemon off;' &
nginx_pid=$!; pids+=($nginx_pid)
wait_http "http://127.0.0.1:$nginx_port/" || { cat "$work/nginx/error.log"; die "nginx did not start"; }
nginx_pids=$(nginx_workers_of)

if [ "$goproxy" = 1 ]; then
  "$work/loadgen" proxy -listen "127.0.0.1:$goproxy_port" -upstream "http://127.0.0.1:$backend_port" &
  goproxy_pid=$!; pids+=($goproxy_pid)
  wait_http "http://127.0.0.1:$goproxy_port/" || die "go-proxy did not start"
fi
if [ "$relay" = 1 ]; then
  "$work/loadgen" relay -listen "127.0.0.1:$relay_port" -upstream "127.0.0.1:$backend_port" &
  relay_pid=$!; pids+=($relay_pid)
  wait_http "http://127.0.0.1:$relay_port/" || die "tcp-relay did not start"
fi

echo "== machine: $cores CPUs ($all_cpus), load average $(cut -d' ' -f1-3 /proc/loadavg), $(uname -r), $(go version | cut -d' ' -f3), $(nginx -v 2>&1 | sed 's/.*: //')"
# Others share these cores: say who, so the numbers can be read against it.
echo "   busiest other processes (%CPU since they started):"
ps -eo pid=,pcpu=,comm= --sort=-pcpu | awk -v self=$$ '$1 != self && NR <= 6 {printf "     %s\n", $0}'
status=0
# bench [CMD...]: the rounds, with the load generator started through CMD (taskset) if given.
# CPU per request: serve's share includes its control plane and autoscaler, idle but for the
# activator's once-a-second load reports.
bench() {
  local args=(-backend-pid "$pid"
    -target "direct=http://127.0.0.1:$backend_port/"
    -target "activator=http://$activator_addr/" -pid "activator=$serve_pid"
    -H 'activator:Knative-Serving-Namespace: default' -H 'activator:Knative-Serving-Revision: hello-00001'
    -target "nginx=http://127.0.0.1:$nginx_port/" -pid "nginx=$nginx_pids")
  [ "$goproxy" = 1 ] && args+=(-target "go-proxy=http://127.0.0.1:$goproxy_port/" -pid "go-proxy=$goproxy_pid")
  [ "$relay" = 1 ] && args+=(-target "tcp-relay=http://127.0.0.1:$relay_port/" -pid "tcp-relay=$relay_pid")
  [ "$aa" = 1 ] && args+=(-target "direct-2=http://127.0.0.1:$backend_port/")
  "$@" "$work/loadgen" bench "${args[@]}" -baseline direct -goal-target activator \
    -c "$conc" -d "$duration" -warmup "$warmup" -rounds "$rounds" -expect 'Hello bench!' || status=$?
}
# pin CPUS PID...: every thread of each process onto CPUS.
pin() { local cpus=$1; shift; for p in "$@"; do taskset -a -p -c "$cpus" "$p" > /dev/null; done; }
if [[ $layout == shared || $layout == both ]]; then
  echo "== layout shared: the load generator, the proxy and the backend on all $cores CPUs"
  bench
fi
if [[ $layout == split || $layout == both ]]; then
  # The proxies on the upper half of the cores, the load generator and the backend on the lower
  # half, for every target alike: the proxy under test gets cores of its own, as an activator
  # does in production, and takes no CPU from the load generator or the backend. Direct gets the
  # lower half only, so the ratios are against what the load generator and the backend can do
  # there. The Go processes follow their new CPU count (GOMAXPROCS tracks affinity); nginx is
  # reloaded with one worker per CPU of its half, as "auto" gives it on all of them.
  high_n=$(tr ',' '\n' <<< "$high" | wc -l)
  if [[ $nginx_workers == auto ]]; then
    nginx_conf "$high_n"
    nginx -p "$work/nginx" -e "$work/nginx/error.log" -c "$work/nginx/nginx.conf" -s reload
    deadline=$((SECONDS + 30))
    until [ "$(pgrep -c -P "$nginx_pid" || true)" = "$high_n" ]; do
      ((SECONDS < deadline)) || die "nginx did not settle at $high_n workers after its reload"
      sleep 0.1
    done
    nginx_pids=$(nginx_workers_of)
  fi
  echo "== layout split: the proxies on CPUs $high, the load generator and the backend on CPUs $low$split_note"
  pin "$high" "$serve_pid" ${nginx_pids//,/ } ${goproxy_pid:-} ${relay_pid:-}
  pin "$low" "$pid"
  bench taskset -c "$low"
  # Instances started from here on (the cold-start samples) inherit serve's CPUs: give all back.
  pin "$all_cpus" "$serve_pid" ${nginx_pids//,/ } ${goproxy_pid:-} ${relay_pid:-} "$pid"
fi
# The activator must have proxied to the instance measured direct, not to one started meanwhile.
[ "$(listening hello-00001 | wc -l)" = 1 ] || die "hello-00001 gained instances during the run: $(listening hello-00001)"

echo "== cold start: $cold_n samples, each: wait for cold-00001 at zero, the app's own start, then one request through the activator"
cold_headers=(-H 'Knative-Serving-Namespace: default' -H 'Knative-Serving-Revision: cold-00001')
: > "$work/app.txt"; : > "$work/first.txt"
for i in $(seq "$cold_n"); do
  deadline=$((SECONDS + 60))
  until at_zero cold-00001; do
    ((SECONDS < deadline)) || { sluice get revisions || true; die "cold-00001 did not scale to zero within 60 s"; }
    kill -0 "$serve_pid" 2> /dev/null || { tail -20 "$work/serve.log"; die "sluice serve exited"; }
    sleep 0.1
  done
  # An instance leaves the load assignments before it is stopped, so the activator already knows;
  # the pause is margin, and lets the stopped instance's exit settle off the CPU.
  sleep 1
  starts=$(listening cold-00001 | wc -l)
  app=$("$work/loadgen" appstart -cmd "$work/helloworld" -env TARGET=cold) || die "sample $i: app start failed"
  first=$("$work/loadgen" firstbyte -url "http://$activator_addr/" "${cold_headers[@]}") ||
    { tail -20 "$work/serve.log"; die "sample $i: the request from zero failed"; }
  # A sample counts only if the request started an instance: otherwise it met a warm one.
  [ "$(listening cold-00001 | wc -l)" = $((starts + 1)) ] ||
    die "sample $i: cold-00001 started $(($(listening cold-00001 | wc -l) - starts)) instances for one request from zero, want 1"
  echo "$app" >> "$work/app.txt"; echo "$first" >> "$work/first.txt"
  echo "  sample $i/$cold_n: app start $app, first byte from zero $first"
done
"$work/loadgen" coldstats -app "$work/app.txt" -first "$work/first.txt"
sluice get revisions || true
echo "== load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
exit $status
