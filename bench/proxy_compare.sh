#!/usr/bin/env bash
# Compares sluice (gateway + decision server) with nginx and HAProxy doing the same work in
# front of the same two sluice-stub upstreams, in one run: a 90/10 weighted split over
# kept-alive upstream connections, up to 2 retries on 5xx and connection failures, a 2s
# per-try timeout. Each proxy gets a short wrk warm-up, then one measured wrk run
# (1 thread, 32 connections, Host: shop). Prints a markdown table (also saved to
# bench/results/proxy_compare.md) with throughput, p50/p99 latency, errors, the proxy's own
# CPU per 1,000 requests, and ratios against HAProxy.
#   usage: bench/proxy_compare.sh [BUILD_DIR]        (or: bench/run.sh proxy [BUILD_DIR])
#   env:   DURATION (10s)   measured wrk run per proxy and round
#          WARMUP (2s)      wrk warm-up before each measured run
#          CONNECTIONS (32) wrk connections
#          ROUNDS (1)       interleaved rounds; the table gives medians
#          PROXIES ("haproxy nginx sluice"; add "sluice-local" for sluice-gateway with
#                           --decisions local (and its own sluice-server), "floor" for
#                           bench/floor_proxy.cc, the bare Beast/Asio proxy that is the floor
#                           of sluice-gateway's stack, "core-floor" for bench/core_floor_proxy.cc,
#                           the same on the gateway's new event core and HTTP/1 codec,
#                           "core-floor-uring" for that with io_uring readiness,
#                           "core-task" for bench/core_task_proxy.cc, the same job as
#                           coroutines on that core; "sluice-epoll" and "sluice-local-epoll"
#                           for sluice and sluice-local with the gateway's --io epoll)
#          OPEN_LOOP_RATE   when set (e.g. 1000): after the wrk rounds, each proxy and the
#                           stub itself ("direct") again at this fixed rate, open-loop, with
#                           bench/open_loop (microsecond latencies); the table gives the
#                           latency each proxy adds over the direct connection
#          OPEN_LOOP_DURATION (10s) measured time of each open-loop run (after a 1 s warm-up)
#          PERF             a proxy's name (e.g. sluice-local): its first process is sampled
#                           with `perf record -g` (Debian's linux-perf) during its first
#                           measured run; the flat profile goes to
#                           bench/results/NAME.perf.txt. PERF=sluice/server samples that
#                           proxy's sluice-server instead (server_local for sluice-local).
#                           PERF_EVENT: record that event instead of CPU samples, e.g. a
#                           uprobe on malloc (`perf probe -x /lib/x86_64-linux-gnu/libc.so.6
#                           malloc`, then PERF_EVENT=probe_libc:malloc): the report then
#                           ranks the callers by the events under them (--children).
#                           PERF_KEEP=FILE keeps the perf.data there for your own reports
#          WORKERS (1)      sluice-gateway's --workers and HAProxy's nbthread (nginx and the
#                           floors stay at one: leave them out of such a run)
#          WRK_THREADS (1)  wrk's threads (-t)
#          MALLOCS (0)      MALLOCS=1: sluice-gateway and the floors run with
#                           bench/malloc_count.c preloaded; each run line gets
#                           mallocs_per_req, heap allocations per request over the run
#          PIN (0)          PIN=1 (2+ cores): wrk on CPU 1, proxies, stubs and
#                           sluice-server on CPU 0; by default the scheduler places all
set -euo pipefail
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/shop_config.sh
source "$root/bench/shop_config.sh"
[[ $build == /* ]] || build="$root/$build"
duration=${DURATION:-10s}
warmup=${WARMUP:-2s}
connections=${CONNECTIONS:-32}
workers=${WORKERS:-1}
wrk_threads=${WRK_THREADS:-1}
rounds=${ROUNDS:-1}
read -r -a proxies <<<"${PROXIES:-haproxy nginx sluice}"
# nginx and haproxy live in /usr/sbin, which a non-root PATH may lack.
export PATH="$PATH:/usr/sbin:/sbin"

for bin in gateway/sluice-gateway server/sluice-server tools/sluice-stub; do
  [[ -x "$build/$bin" ]] || { echo "missing $build/$bin: build first (make build)" >&2; exit 1; }
done

# The load generator and the two other proxies are Debian packages that only this benchmark
# uses, so they are installed here rather than by scripts/install-deps.sh; apt runs only
# when one is absent. (Installing nginx may start Debian's nginx service on port 80; this
# script never uses it: it runs its own nginx binary on a free loopback port.)
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || missing+=(nginx)
command -v haproxy >/dev/null || missing+=(haproxy)
command -v curl >/dev/null || missing+=(curl)
if ((${#missing[@]} > 0)); then
  echo "proxy_compare: installing ${missing[*]}" >&2
  SUDO=
  [[ $(id -u) -eq 0 ]] || SUDO=sudo
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi

# Pinning is off by default because it did not make runs steadier on the 2-core machine
# it was tried on (bench/README.md has the figures): with wrk alone on CPU 1, the proxy and
# both stubs time-share CPU 0, every request switches between them on that core, and
# HAProxy's and nginx's rounds spread wider than unpinned, while throughput drops by 40%.
# PIN=1 keeps it for comparing with such runs; the stubs and sluice-server then share the
# proxy's core, so every proxy pays for its upstreams the same way.
pin_wrk=() pin_rest=()
if [[ ${PIN:-0} == 1 ]] && (($(nproc) >= 2)); then
  pin_wrk=(taskset -c 1) pin_rest=(taskset -c 0)
  pinning="wrk pinned to CPU 1; proxies, stubs and sluice-server pinned to CPU 0"
else
  pinning="no pinning"
fi

work=$(mktemp -d)
pids=() wrk_pid=
cleanup() {
  for p in "${pids[@]}" $wrk_pid; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM  # run cleanup (the EXIT trap) on Ctrl-C too

fail() {  # fail NAME MESSAGE: print what the process said, then stop
  echo "$1: $2" >&2
  for f in "$work/$1.out" "$work/$1.err"; do [[ -s $f ]] && sed "s/^/  $1: /" "$f" >&2; done
  exit 1
}

# By process name: listening port, pid; by proxy: the pids whose CPU counts, and their
# names when there are several (the split is reported too).
declare -A port pid cpu_pids cpu_names

# start NAME KEY CMD...: runs CMD (on the proxies' core when pinned) and waits for its
# "listening KEY=H:P" line (sluice's binaries pick a free port and say which); sets
# port[NAME] and pid[NAME].
start() {
  local name=$1 key=$2; shift 2
  local preload=()
  if [[ ${MALLOCS:-0} == 1 && $name =~ ^(sluice|sluice-local|sluice-epoll|sluice-local-epoll|floor|core-.*)$ ]]; then
    preload=(env "LD_PRELOAD=$build/bench/libmalloc_count.so" "MALLOC_COUNT_FILE=$work/$name.mallocs")
  fi
  "${pin_rest[@]}" "${preload[@]}" "$@" >"$work/$name.out" 2>"$work/$name.err" &
  pid[$name]=$!
  pids+=("${pid[$name]}")
  local addr=
  for _ in $(seq 100); do
    addr=$(sed -n "s/^listening .*\b${key}=\([^ ]*\).*/\1/p" "$work/$name.out")
    [[ -n $addr ]] && break
    kill -0 "${pid[$name]}" 2>/dev/null || break
    sleep 0.1
  done
  [[ -n $addr ]] || fail "$name" "did not start"
  port[$name]=${addr##*:}
}

# nginx and HAProxy need a port in their configuration. Pick one below Linux's ephemeral
# range (32768+, where outgoing connections take theirs) that no socket holds now;
# /proc/net/tcp{,6} list every socket's local port in hex.
free_port() {
  local port
  for _ in $(seq 100); do
    port=$((20000 + RANDOM % 12000))
    if ! awk -v p="$(printf '%04X' "$port")" \
        'FNR > 1 { split($2, a, ":"); if (a[2] == p) found = 1 } END { exit !found }' \
        /proc/net/tcp /proc/net/tcp6; then
      echo "$port"
      return
    fi
  done
  echo "no free port found" >&2
  exit 1
}

# wait_ready NAME: until a request through the proxy gets a 200 from a stub.
wait_ready() {
  local name=$1
  for _ in $(seq 100); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' -H 'Host: shop' "http://127.0.0.1:${port[$name]}/" || true) == 200 ]] && return
    kill -0 "${pid[$name]}" 2>/dev/null || fail "$name" "exited"
    sleep 0.1
  done
  fail "$name" "does not answer 200 on 127.0.0.1:${port[$name]}"
}

# cpu_ticks PID...: utime + stime of each process (all its threads) in clock ticks, one
# number per pid on one line. The command name in /proc/PID/stat may hold spaces, so fields
# are counted after its ")": field 3 (state) comes first, utime is field 14, stime 15.
# stream_counts PROXY: "MESSAGES DECIDE_REQUESTS" the sluice gateway PROXY has sent on its
# decision streams so far (from its /metrics), or nothing for another proxy.
stream_counts() {
  local metrics
  [[ $1 == sluice* ]] || return 0
  metrics=$(sed -n 's/^listening .*\bmetrics=\([^ ]*\).*/\1/p' "$work/$1.out")
  curl -s "http://$metrics/metrics" | awk '
    $1 == "sluice_gateway_decision_stream_messages_total" { m = $2 }
    $1 == "sluice_gateway_decision_stream_decide_requests_total" { d = $2 }
    END { printf "%d %d\n", m, d }'
}

# malloc_count NAME: heap allocations of proxy NAME so far (MALLOCS=1), or nothing.
malloc_count() {
  [[ -f $work/$1.mallocs || ${MALLOCS:-0} == 1 ]] || return 0
  [[ $1 =~ ^(sluice|sluice-local|sluice-epoll|sluice-local-epoll|floor|core-.*)$ ]] || return 0
  rm -f "$work/$1.mallocs"
  kill -USR2 "${pid[$1]}" 2>/dev/null || return 0
  for _ in $(seq 50); do
    [[ -s $work/$1.mallocs ]] && break
    sleep 0.01
  done
  sed -n 's/^mallocs=\([0-9]*\).*/\1/p' "$work/$1.mallocs" 2>/dev/null
}

cpu_ticks() {
  local p stat f per_pid=()
  for p; do
    stat=$(<"/proc/$p/stat")
    read -r -a f <<<"${stat##*) }"
    per_pid+=($((f[11] + f[12])))
  done
  echo "${per_pid[*]}"
}
hz=$(getconf CLK_TCK)

# Upstreams: one stub per subset, each printing "listening http=H:P name=N".
start stub_v1 http "$build/tools/sluice-stub" --listen 127.0.0.1:0 --name shop-v1 --subset v1
start stub_v2 http "$build/tools/sluice-stub" --listen 127.0.0.1:0 --name shop-v2 --subset v2

# write_shop_yaml: bench/shop_config.sh's configuration, written once per run:
# deploy/examples/canary.yaml without its fault and Canary, split 90/10: 5s route timeout, 2
# retries on 5xx with a 2s per-try timeout. Its outlierDetection stays, as nginx's passive
# health check (max_fails=1 by default) stays on nginx's side. Every sluice row uses it, each
# with its own sluice-server.
write_shop_yaml() {
  [[ -e "$work/shop.yaml" ]] && return
  write_shop_config "$work/shop.yaml" "${port[stub_v1]}" "${port[stub_v2]}"
}

for proxy in "${proxies[@]}"; do
  case $proxy in
    sluice)
      write_shop_yaml
      start server grpc "$build/server/sluice-server" --plaintext --config "$work/shop.yaml" \
        --listen 127.0.0.1:0 --metrics 127.0.0.1:0
      start sluice http "$build/gateway/sluice-gateway" --plaintext --listen 127.0.0.1:0 \
        --decision "127.0.0.1:${port[server]}" --metrics 127.0.0.1:0 --workers "$workers"
      # Both processes do the proxy's work: the decision comes from the server.
      cpu_pids[sluice]="${pid[sluice]} ${pid[server]}"
      cpu_names[sluice]="gateway server"
      ;;
    sluice-local)
      # The same, with the gateway deciding from the table its own sluice-server pushes
      # (--decisions local). The server still counts: it receives the attempt reports.
      write_shop_yaml
      start server_local grpc "$build/server/sluice-server" --plaintext --config "$work/shop.yaml" \
        --listen 127.0.0.1:0 --metrics 127.0.0.1:0
      start sluice-local http "$build/gateway/sluice-gateway" --plaintext --listen 127.0.0.1:0 \
        --decision "127.0.0.1:${port[server_local]}" --metrics 127.0.0.1:0 --workers "$workers" \
        --decisions local
      cpu_pids[sluice-local]="${pid[sluice-local]} ${pid[server_local]}"
      cpu_names[sluice-local]="gateway server"
      ;;
    sluice-epoll | sluice-local-epoll)
      # sluice and sluice-local with the gateway's socket I/O on epoll (--io epoll; the
      # default is io_uring where the kernel allows it).
      write_shop_yaml
      server_name=server_${proxy//-/_}
      start "$server_name" grpc "$build/server/sluice-server" --plaintext --config "$work/shop.yaml" \
        --listen 127.0.0.1:0 --metrics 127.0.0.1:0
      mode=server
      [[ $proxy == sluice-local-epoll ]] && mode=local
      start "$proxy" http "$build/gateway/sluice-gateway" --plaintext --listen 127.0.0.1:0 \
        --decision "127.0.0.1:${port[$server_name]}" --metrics 127.0.0.1:0 --workers "$workers" \
        --decisions "$mode" --io epoll
      cpu_pids[$proxy]="${pid[$proxy]} ${pid[$server_name]}"
      cpu_names[$proxy]="gateway server"
      ;;
    nginx)
      # One process (master_process off): it cannot follow WORKERS.
      ((workers == 1)) || { echo "nginx runs one worker here: leave it out when WORKERS=$workers" >&2; exit 2; }
      # One process (no master), its own prefix: Debian's build points the error log and
      # temp folders at /var, which -e and the *_temp_path lines move here.
      port[nginx]=$(free_port)
      mkdir -p "$work/nginx"
      cat >"$work/nginx/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log stderr warn;
events { worker_connections 1024; }
http {
  access_log off;   # sluice-gateway and HAProxy here log nothing either
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  upstream shop {
    server 127.0.0.1:${port[stub_v1]} weight=9;
    server 127.0.0.1:${port[stub_v2]} weight=1;
    keepalive 64;
  }
  server {
    listen 127.0.0.1:${port[nginx]};
    keepalive_requests 1000000;   # as the others: never close a client connection mid-run
    location / {
      proxy_pass http://shop;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_connect_timeout 10s;
      proxy_read_timeout 2s;           # the per-try timeout
      proxy_next_upstream error timeout http_502 http_503 http_504;
      proxy_next_upstream_tries 3;     # first try + 2 retries
      proxy_next_upstream_timeout 5s;  # the route timeout
    }
  }
}
EOF
      "${pin_rest[@]}" nginx -e stderr -p "$work/nginx" -c "$work/nginx/nginx.conf" \
        >"$work/nginx.out" 2>"$work/nginx.err" &
      pid[nginx]=$!
      pids+=("${pid[nginx]}")
      cpu_pids[nginx]=${pid[nginx]}
      ;;
    haproxy)
      port[haproxy]=$(free_port)
      cat >"$work/haproxy.cfg" <<EOF
global
  nbthread $workers
  maxconn 4096
defaults
  mode http
  option http-keep-alive
  timeout connect 10s
  timeout client 30s
  timeout server 2s                 # the per-try timeout
  timeout http-keep-alive 30s
  retries 2
  # HAProxy has no "5xx" keyword: these are the 5xx codes and failures it can retry.
  retry-on conn-failure empty-response response-timeout 500 502 503 504
  option redispatch 1               # every retry may go to another server, as in Envoy
frontend fe
  bind 127.0.0.1:${port[haproxy]}
  default_backend shop
backend shop
  balance roundrobin
  http-reuse always
  server v1 127.0.0.1:${port[stub_v1]} weight 90
  server v2 127.0.0.1:${port[stub_v2]} weight 10
EOF
      "${pin_rest[@]}" haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.out" 2>"$work/haproxy.err" &
      pid[haproxy]=$!
      pids+=("${pid[haproxy]}")
      cpu_pids[haproxy]=${pid[haproxy]}
      ;;
    floor)
      # Not a product: bench/floor_proxy.cc, the least a proxy on sluice-gateway's stack
      # (Beast + Asio coroutines, one thread) costs, with none of its features. Opt-in:
      # PROXIES="haproxy sluice floor".
      [[ -x "$build/bench/floor_proxy" ]] || { echo "missing $build/bench/floor_proxy" >&2; exit 1; }
      start floor http "$build/bench/floor_proxy" --listen 127.0.0.1:0 \
        --upstream "127.0.0.1:${port[stub_v1]}:90" --upstream "127.0.0.1:${port[stub_v2]}:10"
      cpu_pids[floor]=${pid[floor]}
      ;;
    core-floor)
      # Not a product either: bench/core_floor_proxy.cc, the same floor on the gateway's new
      # core (gateway/event's epoll dispatcher and timer wheel, the llhttp codec), with a
      # route, per-try and idle timer armed per request. PROXIES="haproxy floor core-floor".
      [[ -x "$build/bench/core_floor_proxy" ]] || { echo "missing $build/bench/core_floor_proxy" >&2; exit 1; }
      start core-floor http "$build/bench/core_floor_proxy" --listen 127.0.0.1:0 \
        --upstream "127.0.0.1:${port[stub_v1]}:90" --upstream "127.0.0.1:${port[stub_v2]}:10"
      cpu_pids[core-floor]=${pid[core-floor]}
      ;;
    core-task)
      # core_floor_proxy's job written as coroutines on the same core (bench/core_task_proxy.cc).
      [[ -x "$build/bench/core_task_proxy" ]] || { echo "missing $build/bench/core_task_proxy" >&2; exit 1; }
      start core-task http "$build/bench/core_task_proxy" --listen 127.0.0.1:0 \
        --upstream "127.0.0.1:${port[stub_v1]}:90" --upstream "127.0.0.1:${port[stub_v2]}:10"
      cpu_pids[core-task]=${pid[core-task]}
      ;;
    core-floor-uring)
      # The same core-floor with io_uring readiness (multishot poll) in place of epoll.
      [[ -x "$build/bench/core_floor_proxy" ]] || { echo "missing $build/bench/core_floor_proxy" >&2; exit 1; }
      start core-floor-uring http "$build/bench/core_floor_proxy" --listen 127.0.0.1:0 \
        --upstream "127.0.0.1:${port[stub_v1]}:90" --upstream "127.0.0.1:${port[stub_v2]}:10" \
        --poller io_uring
      cpu_pids[core-floor-uring]=${pid[core-floor-uring]}
      ;;
    *) echo "unknown proxy $proxy (want haproxy, nginx, sluice, sluice-local, sluice-epoll, sluice-local-epoll, floor, core-floor, core-floor-uring, core-task)" >&2; exit 2 ;;
  esac
  wait_ready "$proxy"
done

# run_wrk OUT ARGS...: wrk ARGS > OUT. wrk runs in the background and the script waits for
# it, so that SIGINT or SIGTERM stop everything at once rather than when wrk is done.
run_wrk() {
  local out=$1; shift
  "${pin_wrk[@]}" wrk "$@" >"$out" &
  wrk_pid=$!
  wait "$wrk_pid"
  wrk_pid=
}

stub_count() {  # stub_count PORT: requests the stub received since its last reset
  curl -s "http://127.0.0.1:$1/stub/stats" | grep -o '"received":[0-9]*' | cut -d: -f2
}

# One line of key=value per measured run in runs.txt; wrk's own output in NAME.ROUND.wrk.
loadavg=$(cut -d' ' -f1-3 /proc/loadavg)
for ((r = 1; r <= rounds; r++)); do
  for proxy in "${proxies[@]}"; do
    url="http://127.0.0.1:${port[$proxy]}/"
    run_wrk /dev/null -t"$wrk_threads" -c"$connections" -d"$warmup" -H 'Host: shop' "$url"
    curl -s -X POST "http://127.0.0.1:${port[stub_v1]}/stub/reset" >/dev/null
    curl -s -X POST "http://127.0.0.1:${port[stub_v2]}/stub/reset" >/dev/null
    # shellcheck disable=SC2086  # the list of pids is meant to split
    read -r -a before <<<"$(cpu_ticks ${cpu_pids[$proxy]})"
    read -r -a stream_before <<<"$(stream_counts "$proxy")"
    mallocs_before=$(malloc_count "$proxy")
    perf_pid=
    perf_proxy=${PERF:-} perf_process=${PERF:-}
    perf_proxy=${perf_proxy%%/*} perf_process=${perf_process##*/}
    if [[ -n $perf_proxy && $perf_proxy == "$proxy" && $r == 1 ]]; then
      perf_args=(-F 999 -g)
      # One event in 50, with DWARF stacks: the binaries keep no frame pointers.
      [[ -n ${PERF_EVENT:-} ]] && perf_args=(-e "$PERF_EVENT" -c 50 --call-graph dwarf,8192)
      perf record "${perf_args[@]}" -p "${pid[$perf_process]}" \
        -o "$work/$perf_process.perf.data" -- sleep "$duration" >/dev/null 2>&1 &
      perf_pid=$!
    fi
    run_wrk "$work/$proxy.$r.wrk" -t"$wrk_threads" -c"$connections" -d"$duration" --latency -H 'Host: shop' "$url"
    if [[ -n $perf_pid ]]; then
      wait "$perf_pid" || true
      mkdir -p "$root/bench/results"
      {
        perf report -i "$work/$perf_process.perf.data" --no-children --sort dso --stdio \
          -g none 2>/dev/null | grep -v '^$' | head -30
        perf report -i "$work/$perf_process.perf.data" \
          "$([[ -n ${PERF_EVENT:-} ]] && echo --children || echo --no-children)" \
          --sort dso,sym --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -80
      } >"$root/bench/results/$perf_process.perf.txt" || true
      [[ -n ${PERF_KEEP:-} ]] && cp "$work/$perf_process.perf.data" "$PERF_KEEP"
    fi
    # shellcheck disable=SC2086
    read -r -a after <<<"$(cpu_ticks ${cpu_pids[$proxy]})"
    read -r -a stream_after <<<"$(stream_counts "$proxy")"
    mallocs_after=$(malloc_count "$proxy")
    stream=
    if ((${#stream_before[@]} == 2 && ${#stream_after[@]} == 2)); then
      # The worker adds its stream's counts to the metrics every 100 ms: close enough over a
      # run of seconds. Messages per second and decide requests per message (server mode).
      stream=$(awk -v m=$((stream_after[0] - stream_before[0])) \
        -v d=$((stream_after[1] - stream_before[1])) -v secs="${duration%s}" \
        'BEGIN { printf " stream_msgs_per_s=%.0f decides_per_msg=%.1f", m / secs, m ? d / m : 0 }')
    fi
    if [[ -n $mallocs_before && -n $mallocs_after ]]; then
      stream+=" mallocs=$((mallocs_after - mallocs_before))"
    fi
    read -r -a names <<<"${cpu_names[$proxy]:-}"
    ticks=0 split=
    for i in "${!before[@]}"; do
      ticks=$((ticks + after[i] - before[i]))
      if ((${#names[@]} > 1)); then
        split+="${split:+,}${names[i]}:$((after[i] - before[i]))"
      fi
    done
    v1=$(stub_count "${port[stub_v1]}") v2=$(stub_count "${port[stub_v2]}")
    awk -v proxy="$proxy" -v round="$r" -v ticks="$ticks" -v hz="$hz" -v split_ticks="$split" \
        -v stream="$stream" \
        -v v1="$v1" -v v2="$v2" '
      function ms(s) {  # wrk prints latencies as 512.00us, 3.40ms or 1.02s
        if (s ~ /us$/) return s / 1000
        if (s ~ /ms$/) return s + 0
        if (s ~ /s$/) return s * 1000
        return s + 0 }
      $1 == "50%" { p50 = ms($2) }
      $1 == "99%" { p99 = ms($2) }
      / requests in / { requests = $1 }
      /^Requests\/sec:/ { rps = $2 }
      /^  Non-2xx or 3xx responses:/ { non2xx = $NF }
      /^  Socket errors:/ { for (i = 4; i <= NF; i += 2) { v = $i; sub(/,/, "", v); sockerr += v } }
      END {
        cpu = ticks / hz
        n = split(split_ticks, parts, ",")  # "gateway:123,server:45" in ticks, to seconds
        split_s = ""
        for (i = 1; i <= n; i++) {
          split(parts[i], kv, ":"); split_s = split_s (i > 1 ? "," : "") sprintf("%s:%.2fs", kv[1], kv[2] / hz) }
        printf "proxy=%s round=%d rps=%.0f requests=%d p50_ms=%.3f p99_ms=%.3f non2xx=%d sockerr=%d cpu_s=%.2f cpu_s_per_1k=%.4f upstream_requests=%d v2_share=%.3f%s\n",
          proxy, round, rps, requests, p50, p99, non2xx, sockerr, cpu, cpu * 1000 / requests,
          v1 + v2, (v1 + v2) ? v2 / (v1 + v2) : 0, (n ? " cpu_split=" split_s : "") stream \
          mallocs_per_req(stream, requests) }
      function mallocs_per_req(s, requests,   m) {
        if (!match(s, /mallocs=[0-9]+/) || !requests) return ""
        m = substr(s, RSTART + 8, RLENGTH - 8)
        return sprintf(" mallocs_per_req=%.1f", m / requests) }' "$work/$proxy.$r.wrk" | tee -a "$work/runs.txt"
  done
done

out="$root/bench/results/proxy_compare.md"
mkdir -p "$root/bench/results"
{
  echo "# Proxy comparison: sluice vs nginx vs HAProxy"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), commit $(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)"
  echo "nginx $(nginx -v 2>&1 | cut -d/ -f2), HAProxy $(haproxy -v | head -1 | cut -d' ' -f3), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
  echo "Loopback; $pinning. $workers worker(s)/thread(s) per proxy (sluice-gateway --workers, HAProxy nbthread; the floors have one); sluice is sluice-gateway + sluice-server;"
  echo "sluice-local is the same with \`--decisions local\` (decisions in the gateway, from the table its server pushes)."
  echo "wrk -t$wrk_threads -c$connections -d$duration --latency -H 'Host: shop' after a ${warmup} warm-up; $rounds round(s), medians."
  echo "Proxy CPU is utime+stime from /proc/PID/stat over the measured run (sluice, sluice-local: gateway + server)."
  echo "Load average when the runs started: $loadavg (anything else running on the machine shows here)."
  echo
  echo "| proxy | requests/s | p50 | p99 | non-2xx/3xx | socket errors | proxy CPU s per 1k req | req/s vs HAProxy | CPU/1k vs HAProxy | upstream share v2 |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
  awk -v order="${proxies[*]}" '
    { for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
      p = f["proxy"]; k = ++n[p]
      rps[p, k] = f["rps"]; p50[p, k] = f["p50_ms"]; p99[p, k] = f["p99_ms"]
      cpu[p, k] = f["cpu_s_per_1k"]; share[p, k] = f["v2_share"]
      non2xx[p] += f["non2xx"]; sockerr[p] += f["sockerr"] }
    function median(a, p,   k, i, j, t, v) {
      k = n[p]; for (i = 1; i <= k; i++) v[i] = a[p, i]
      for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (v[j] + 0 < v[i] + 0) { t = v[i]; v[i] = v[j]; v[j] = t }
      return v[int((k + 1) / 2)] }
    END {
      m = split(order, names, " ")
      base = ("haproxy" in n)
      for (o = 1; o <= m; o++) {
        p = names[o]; r = median(rps, p); c = median(cpu, p)
        rr = base ? sprintf("%.2fx", r / median(rps, "haproxy")) : "n/a"
        cr = base ? sprintf("%.2fx", c / median(cpu, "haproxy")) : "n/a"
        if (p == "haproxy") { rr = "1 (baseline)"; cr = "1 (baseline)" }
        printf "| %s | %.0f | %.2f ms | %.2f ms | %d | %d | %.4f s | %s | %s | %.1f%% |\n",
          p, r, median(p50, p), median(p99, p), non2xx[p], sockerr[p], c, rr, cr, 100 * median(share, p)
      }
    }' "$work/runs.txt"
  echo
  echo "Raw runs:"
  echo
  echo '```'
  cat "$work/runs.txt"
  echo '```'
  echo
  echo "wrk output of the measured runs:"
  for ((r = 1; r <= rounds; r++)); do
    for proxy in "${proxies[@]}"; do
      echo
      echo "$proxy, round $r:"
      echo
      echo '```'
      cat "$work/$proxy.$r.wrk"
      echo '```'
    done
  done
} >"$out"

# Latency added at a fixed rate: open-loop, each proxy against the stub reached directly.
if [[ -n "${OPEN_LOOP_RATE:-}" ]]; then
  [[ -x "$build/bench/open_loop" ]] || { echo "missing $build/bench/open_loop" >&2; exit 1; }
  port[direct]=${port[stub_v1]}
  : >"$work/open_loop.txt"
  for ((r = 1; r <= rounds; r++)); do
    for target in direct "${proxies[@]}"; do
      line=$("${pin_wrk[@]}" "$build/bench/open_loop" --target "127.0.0.1:${port[$target]}" \
        --rate "$OPEN_LOOP_RATE" --duration "${OPEN_LOOP_DURATION:-10s}" --warmup 1s)
      echo "target=$target round=$r $line" | tee -a "$work/open_loop.txt"
    done
  done
  {
    echo
    echo "## Latency at a fixed ${OPEN_LOOP_RATE} requests/s (open loop)"
    echo
    echo "bench/open_loop --rate $OPEN_LOOP_RATE --duration ${OPEN_LOOP_DURATION:-10s} --warmup 1s, 32 keep-alive"
    echo "connections, one request each at a time; latency from the request's write to the response's"
    echo "last byte; \"direct\" is the v1 stub without a proxy. Medians over $rounds round(s), in µs."
    echo
    echo "| target | p50 | p90 | p99 | p99.9 | added p50 | added p99 | errors | generator lag p99 |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    awk -v order="direct ${proxies[*]}" '
      { for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
        t = f["target"]; k = ++n[t]
        p50[t, k] = f["p50_us"]; p90[t, k] = f["p90_us"]; p99[t, k] = f["p99_us"]
        p999[t, k] = f["p999_us"]; lag[t, k] = f["lag_p99_us"]; errors[t] += f["errors"] }
      function median(a, t,   k, i, j, x, v) {
        k = n[t]; for (i = 1; i <= k; i++) v[i] = a[t, i]
        for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (v[j] + 0 < v[i] + 0) { x = v[i]; v[i] = v[j]; v[j] = x }
        return v[int((k + 1) / 2)] }
      END {
        m = split(order, names, " ")
        for (o = 1; o <= m; o++) {
          t = names[o]
          printf "| %s | %d | %d | %d | %d | %s | %s | %d | %d |\n", t, median(p50, t), median(p90, t),
            median(p99, t), median(p999, t),
            t == "direct" ? "-" : sprintf("%d", median(p50, t) - median(p50, "direct")),
            t == "direct" ? "-" : sprintf("%d", median(p99, t) - median(p99, "direct")),
            errors[t], median(lag, t) } }' "$work/open_loop.txt"
    echo
    echo '```'
    cat "$work/open_loop.txt"
    echo '```'
  } >>"$out"
fi
cat "$out"

# Anything a proxy said on stderr (errors, warnings) belongs with its figures.
for name in sluice server sluice-local server_local sluice-epoll server_sluice_epoll \
  sluice-local-epoll server_sluice_local_epoll nginx haproxy; do
  if [[ -s "$work/$name.err" ]]; then
    echo
    echo "$name stderr (last 10 lines):"
    tail -n 10 "$work/$name.err"
  fi
done
