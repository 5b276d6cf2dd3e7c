#!/usr/bin/env bash
# kvbench: raftkv against etcd 3.4, back to back, on this machine.
#
# Starts a local 3-node raftkv cluster (fsync on), drives it with the shared load generator
# (../shared/anchors/kvbench, `loadgen`: closed loop, 128-byte SETs, one request in flight per
# client) at 1, 16, 64 and 256 clients, stops it; starts a 3-member etcd cluster (fsync on) with
# the anchor's etcd-start.sh and runs the same points against it; then runs redis-benchmark
# against a fresh raftkv cluster. Prints a markdown table (raftkv | etcd | ratios), the
# redis-benchmark figures, the disk's fsync latency and the load average at start and end.
#
#   scripts/kvbench.sh                 # full run (about 1-2 minutes once built, on 2 vCPUs)
#   scripts/kvbench.sh --quick         # fewer requests per point (a smoke test, under a minute)
#   scripts/kvbench.sh --skip-etcd     # raftkv only (no etcd columns)
#   scripts/kvbench.sh --keep          # keep the data dirs and logs in the temp dir
#   scripts/kvbench.sh --clients "1 64" --logs DIR
#   scripts/kvbench.sh --raftkv-args "--snapshot-entries 100000"   # extra `raftkv serve` flags
#
# Installs what is missing (Debian: etcd-server etcd-client protobuf-compiler redis-tools
# python3), builds raftkv (release; honours CARGO_TARGET_DIR) and loadgen (release, in
# target/kvbench). Every process it starts is stopped on exit; logs (raftkv stderr, loadgen
# output, RAFT.INFO before/after each point, the report) are copied to
# ${KVBENCH_LOGS:-/tmp/kvbench-logs}/run-<date>/. Exits 1 if any run failed (loadgen errors or
# verification failure, a timeout, a server that died, no leader), 2 on a usage or setup error.
#
# Environment: KVBENCH_ANCHOR (default ../shared/anchors/kvbench), KVBENCH_LOGS,
# KVBENCH_RUN_TIMEOUT (seconds per loadgen run, default 240), KVBENCH_RAFTKV_ARGS, CARGO_TARGET_DIR.
set -uo pipefail

usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

QUICK=0 SKIP_ETCD=0 KEEP=0
CLIENTS="1 16 64 256"
LOGROOT=${KVBENCH_LOGS:-/tmp/kvbench-logs}
RUN_TIMEOUT=${KVBENCH_RUN_TIMEOUT:-240}
VERIFY=100
RAFTKV_ARGS=${KVBENCH_RAFTKV_ARGS:-}
while [ $# -gt 0 ]; do
  case $1 in
    --quick) QUICK=1 ;;
    --skip-etcd) SKIP_ETCD=1 ;;
    --keep) KEEP=1 ;;
    --clients) CLIENTS=${2:?--clients needs a list, e.g. \"1 16 64\"}; shift ;;
    --logs) LOGROOT=${2:?--logs needs a directory}; shift ;;
    --raftkv-args) RAFTKV_ARGS=${2?--raftkv-args needs a string}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "kvbench: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
CLIENTS=${CLIENTS//,/ }

cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)
ANCHOR=${KVBENCH_ANCHOR:-$ROOT/../shared/anchors/kvbench}
[ -f "$ANCHOR/Cargo.toml" ] || { echo "kvbench: load generator not found in $ANCHOR (set KVBENCH_ANCHOR)" >&2; exit 2; }
ANCHOR=$(cd "$ANCHOR" && pwd)

log() { printf '[kvbench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 2; }

# Requests per point: enough for a stable figure, the whole script within ~10 minutes.
requests_for() {
  local c=$1
  if [ "$QUICK" = 1 ]; then
    if [ "$c" -le 1 ]; then echo 500; elif [ "$c" -le 16 ]; then echo 4000; else echo 8000; fi
  else
    if [ "$c" -le 1 ]; then echo 3000; elif [ "$c" -le 16 ]; then echo 20000; else echo 40000; fi
  fi
}
RB_REQUESTS=50000
[ "$QUICK" = 1 ] && RB_REQUESTS=10000

# ------------------------------------------------------------------ temp dir, cleanup

TMP='' LOGS=''
RUN_ID=run-$(date +%Y%m%d-%H%M%S)
RAFT_PIDS=()
ETCD_STARTED=0
CHILD='' # the long command running now (a build, loadgen, redis-benchmark)
STATUS=0 # 1 once any run failed

# child OUT ERR CMD...: runs CMD as a child the cleanup can stop (bash runs a trap only once a
# foreground command ends, while `wait` is interrupted at once). OUT: a file, or "2" for the
# script's stderr; ERR: a file, "1" for the same as OUT, or "-" for the script's stderr. (The
# redirections are not put on the call itself, or the cleanup would run with them.)
child() {
  local out=$1 err=$2
  shift 2
  if [ "$out" = 2 ]; then
    "$@" >&2 &
  elif [ "$err" = 1 ]; then
    "$@" >"$out" 2>&1 &
  elif [ "$err" = - ]; then
    "$@" >"$out" &
  else
    "$@" >"$out" 2>"$err" &
  fi
  CHILD=$!
  wait "$CHILD"
  local rc=$?
  CHILD=''
  return $rc
}

stop_raftkv() {
  local p
  for p in "${RAFT_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${RAFT_PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$p" 2>/dev/null; then
      log "raftkv pid $p did not stop on TERM within 5 s: KILL"
      kill -KILL "$p" 2>/dev/null
    fi
    wait "$p" 2>/dev/null
  done
  RAFT_PIDS=()
}

stop_etcd() {
  if [ "$ETCD_STARTED" = 1 ]; then
    if [ "$KEEP" = 1 ]; then "$ANCHOR/etcd-stop.sh" >&2; else "$ANCHOR/etcd-stop.sh" --wipe >&2; fi
    ETCD_STARTED=0
  fi
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$CHILD" ]; then
    kill -TERM "$CHILD" 2>/dev/null
    wait "$CHILD" 2>/dev/null
  fi
  stop_raftkv
  stop_etcd
  if [ -n "$LOGS" ] && [ -d "$LOGS" ]; then
    mkdir -p "$LOGROOT/$RUN_ID" && cp -r "$LOGS"/. "$ETCD_ANCHOR_DIR"/*.log "$LOGROOT/$RUN_ID/" 2>/dev/null
    log "logs copied to $LOGROOT/$RUN_ID"
  fi
  if [ -n "$TMP" ]; then
    if [ "$KEEP" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

TMP=$(mktemp -d "${TMPDIR:-/tmp}/kvbench.XXXXXX") || die "mktemp failed"
LOGS=$TMP/logs
mkdir -p "$LOGS"
export ETCD_ANCHOR_DIR=$TMP/etcd

# ------------------------------------------------------------------ dependencies and builds

install_missing() {
  local need=() pkgs=()
  command -v python3 >/dev/null || need+=(python3:python3)
  command -v protoc >/dev/null || need+=(protoc:protobuf-compiler)
  command -v redis-cli >/dev/null || need+=(redis-cli:redis-tools)
  command -v redis-benchmark >/dev/null || need+=(redis-benchmark:redis-tools)
  command -v timeout >/dev/null || need+=(timeout:coreutils)
  if [ "$SKIP_ETCD" = 0 ]; then
    [ -x "${ETCD_BIN:-/usr/bin/etcd}" ] || need+=(etcd:etcd-server)
    command -v etcdctl >/dev/null || need+=(etcdctl:etcd-client)
  fi
  [ ${#need[@]} -eq 0 ] && return 0
  local n
  for n in "${need[@]}"; do pkgs+=("${n#*:}"); done
  mapfile -t pkgs < <(printf '%s\n' "${pkgs[@]}" | sort -u)
  command -v apt-get >/dev/null || die "missing: ${need[*]%%:*}; install ${pkgs[*]} by hand"
  local sudo=
  [ "$(id -u)" = 0 ] || sudo=sudo
  log "installing ${pkgs[*]}"
  $sudo apt-get update -qq >&2 || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${pkgs[@]}" >&2 || die "apt-get install ${pkgs[*]} failed"
}

install_missing
log "building raftkv (release)"
child 2 - cargo build --release -p raft-net --bin raftkv || die "building raftkv failed"
RAFTKV=${CARGO_TARGET_DIR:-target}/release/raftkv
case $RAFTKV in /*) ;; *) RAFTKV=$ROOT/$RAFTKV ;; esac
[ -x "$RAFTKV" ] || die "no binary at $RAFTKV"
log "building loadgen (release, target/kvbench)"
child 2 - cargo build --release --manifest-path "$ANCHOR/Cargo.toml" --target-dir target/kvbench || die "building loadgen failed"
LOADGEN=$ROOT/target/kvbench/release/loadgen
[ -x "$LOADGEN" ] || die "no binary at $LOADGEN"

case $(findmnt -n -o FSTYPE -T "$TMP" 2>/dev/null) in
  tmpfs|ramfs) log "WARNING: $TMP is on $(findmnt -n -o FSTYPE -T "$TMP"): fsync costs nothing there; set TMPDIR to a disk" ;;
esac

# ------------------------------------------------------------------ machine facts

fsync_probe() { # 4 KiB append + fdatasync in $TMP: "p50 p99" of 200 in a row, then "p99 max n" of 2 s back to back
  python3 - "$TMP/fsync-probe" <<'EOF'
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
buf = b"x" * 4096
def one():
    t = time.perf_counter()
    os.write(fd, buf)
    os.fdatasync(fd)
    return (time.perf_counter() - t) * 1000
ts = sorted(one() for _ in range(200))
end, ss = time.perf_counter() + 2, []
while time.perf_counter() < end:
    ss.append(one())
ss.sort()
os.close(fd)
os.unlink(sys.argv[1])
print(f"{ts[len(ts) // 2]:.3f} {ts[int(len(ts) * 0.99)]:.3f} {ss[int(len(ss) * 0.99)]:.2f} {ss[-1]:.2f} {len(ss)}")
EOF
}

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
top_snapshot() { # the second of two frames (the first has no %CPU), busiest first
  { top -b -n 2 -d 0.5 -o %CPU -c -w 200 2>/dev/null | awk '/^top -/ { n++ } n == 2' | head -25; } >"$1"
}

LOAD_START=$(loadavg)
top_snapshot "$LOGS/top-start.txt"
read -r FSYNC_P50 FSYNC_P99 FSYNC_S99 FSYNC_SMAX FSYNC_SN < <(fsync_probe) || die "fsync probe failed"
log "fsync (4 KiB + fdatasync) p50 ${FSYNC_P50} ms p99 ${FSYNC_P99} ms (sustained 2 s: p99 ${FSYNC_S99} ms, max ${FSYNC_SMAX} ms); loadavg $LOAD_START"

# ------------------------------------------------------------------ raftkv cluster

free_ports() { # $1 = how many
  python3 - "$1" <<'EOF'
# Ports below the kernel's ephemeral range: a port the kernel hands out could be taken, before
# the server binds it, by an outgoing connection (the first node connects to its peers at once).
import random, socket, sys
try:
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except (OSError, ValueError, IndexError):
    low = 0
candidates = list(range(low - 10000, low)) if low >= 11024 else []
random.shuffle(candidates)
socks = []
for port in candidates:
    if len(socks) == int(sys.argv[1]):
        break
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        socks.append(s)
    except OSError:
        s.close()
while len(socks) < int(sys.argv[1]):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
ports = [s.getsockname()[1] for s in socks]
# Close before printing: the caller starts servers on these ports as soon as it reads the line,
# possibly before this process has exited.
for s in socks:
    s.close()
print(" ".join(map(str, ports)), flush=True)
EOF
}

raft_info() { # $1 = client port
  timeout 3 redis-cli -h 127.0.0.1 -p "$1" RAFT.INFO 2>/dev/null | tr -d '\r'
}

field() { # $1 = info text, $2 = key
  sed -n "s/^$2:\(.*\)$/\1/p" <<<"$1" | head -1
}

CPORTS=() PPORTS=() ENDPOINTS='' LEADER_ID='' LEADER_PORT=''
start_raftkv() { # $1 = tag
  local tag=$1 ports i peers=
  read -r -a ports < <(free_ports 6) || die "no free ports"
  CPORTS=("${ports[0]}" "${ports[1]}" "${ports[2]}")
  PPORTS=("${ports[3]}" "${ports[4]}" "${ports[5]}")
  for i in 1 2 3; do peers+="${peers:+,}$i=127.0.0.1:${PPORTS[i - 1]}"; done
  for i in 1 2 3; do
    # shellcheck disable=SC2086 # RAFTKV_ARGS is a list of flags
    NO_COLOR=1 "$RAFTKV" serve --id "$i" --data "$TMP/raftkv-$tag/n$i" \
      --listen "127.0.0.1:${CPORTS[i - 1]}" --peer-listen "127.0.0.1:${PPORTS[i - 1]}" \
      --peers "$peers" $RAFTKV_ARGS >"$LOGS/raftkv-$tag-n$i.log" 2>&1 &
    RAFT_PIDS+=($!)
  done
  ENDPOINTS=127.0.0.1:${CPORTS[0]},127.0.0.1:${CPORTS[1]},127.0.0.1:${CPORTS[2]}
  # A leader, and every node knows it (followers forward writes to it).
  local deadline=$((SECONDS + 30)) info leaders ids
  while [ $SECONDS -lt $deadline ]; do
    leaders=() ids=()
    for i in 1 2 3; do
      kill -0 "${RAFT_PIDS[i - 1]}" 2>/dev/null || { tail -5 "$LOGS/raftkv-$tag-n$i.log" >&2; die "raftkv node $i exited at startup"; }
      info=$(raft_info "${CPORTS[i - 1]}")
      [ "$(field "$info" role)" = leader ] && leaders+=("$i")
      ids+=("$(field "$info" leader_id)")
    done
    if [ ${#leaders[@]} = 1 ] && [ "${ids[*]}" = "${leaders[0]} ${leaders[0]} ${leaders[0]}" ]; then
      LEADER_ID=${leaders[0]}
      LEADER_PORT=${CPORTS[LEADER_ID - 1]}
      log "raftkv ($tag): leader node $LEADER_ID; clients on $ENDPOINTS"
      return 0
    fi
    sleep 0.2
  done
  STATUS=1
  die "raftkv ($tag): no leader known to all nodes within 30 s (last leader_ids: ${ids[*]})"
}

snapshot_info() { # $1 = file
  local i
  for i in 1 2 3; do echo "# node $i"; raft_info "${CPORTS[i - 1]}"; done >"$1"
}

leader_fsyncs() { field "$(raft_info "$LEADER_PORT")" fsyncs; }

raftkv_cpu_ticks() { # user+system clock ticks of the raftkv servers so far
  local p t=0 f
  for p in "${RAFT_PIDS[@]}"; do
    f=$(cut -d')' -f2- "/proc/$p/stat" 2>/dev/null) || continue
    # shellcheck disable=SC2086 # split the fields
    set -- $f
    t=$((t + ${12} + ${13}))
  done
  echo $t
}
HZ=$(getconf CLK_TCK 2>/dev/null || echo 100)

# ------------------------------------------------------------------ loadgen

json_num() { # $1 = JSON line, $2 = key
  sed -n "s/.*\"$2\":\([-0-9.]*\).*/\1/p" <<<"$1"
}

declare -A TPUT P50 P99 OK NOTE
run_loadgen() { # $1 = backend (resp|etcd), $2 = clients, $3 = endpoints, $4 = target, $5 = label (default: backend)
  local be=$1 c=$2 eps=$3 target=$4 label=${5:-$1} n rc out line errors verified k
  n=$(requests_for "$c")
  k=$label/$c
  out=$LOGS/loadgen-$label-c$c.log
  log "$label: $c clients, $n requests ..."
  child "$out" 1 timeout "$RUN_TIMEOUT" "$LOADGEN" --backend "$be" --endpoints "$eps" --target "$target" \
    --clients "$c" --requests "$n" --value-size 128 --verify "$VERIFY" --json --label "$k"
  rc=$?
  line=$(grep '^JSON ' "$out" | tail -1)
  TPUT[$k]=$(json_num "$line" throughput)
  P50[$k]=$(json_num "$line" p50_ms)
  P99[$k]=$(json_num "$line" p99_ms)
  errors=$(json_num "$line" errors)
  verified=$(json_num "$line" verified)
  OK[$k]=1
  NOTE[$k]=
  if [ $rc = 124 ]; then
    OK[$k]=0 NOTE[$k]="timed out after ${RUN_TIMEOUT}s"
  elif [ $rc != 0 ]; then
    OK[$k]=0 NOTE[$k]="loadgen exit $rc: $(grep -v '^JSON ' "$out" | tail -1)"
  elif [ -z "$line" ]; then
    OK[$k]=0 NOTE[$k]="no result line"
  elif [ "${errors:-0}" != 0 ]; then
    OK[$k]=0 NOTE[$k]="$errors of $n requests failed ($(sed -n 's/^first error: //p' "$out" | head -1))"
  elif [ "${verified:-0}" -lt "$VERIFY" ]; then
    OK[$k]=0 NOTE[$k]="verified only ${verified:-0} of $VERIFY keys"
  fi
  if [ "${OK[$k]}" = 1 ]; then
    log "$label: $c clients: $(grep -m1 -o 'throughput=.*' "$out")"
  else
    STATUS=1
    log "$label: $c clients: FAILED: ${NOTE[$k]} (see ${out##*/} in the logs)"
  fi
}

# ------------------------------------------------------------------ the runs

declare -A FSYNCS CPU SNAPS
start_raftkv bench
for c in $CLIENTS; do
  snapshot_info "$LOGS/raft-info-before-c$c.txt"
  f0=$(leader_fsyncs)
  t0=$(raftkv_cpu_ticks)
  s0=$(cat "$LOGS"/raftkv-bench-n*.log | grep -c 'installed a snapshot')
  # Like for like with etcd (driven through its leader): clients talk to raftkv's leader.
  run_loadgen resp "$c" "127.0.0.1:$LEADER_PORT" first
  f1=$(leader_fsyncs)
  t1=$(raftkv_cpu_ticks)
  FSYNCS[$c]=$(( ${f1:-0} - ${f0:-0} ))
  CPU[$c]=$(awk -v t=$((t1 - t0)) -v hz="$HZ" 'BEGIN { printf "%.1f", t / hz }')
  SNAPS[$c]=$(( $(cat "$LOGS"/raftkv-bench-n*.log | grep -c 'installed a snapshot') - s0 ))
  snapshot_info "$LOGS/raft-info-after-c$c.txt"
  for i in 1 2 3; do
    kill -0 "${RAFT_PIDS[i - 1]}" 2>/dev/null || { STATUS=1; log "raftkv node $i died during the $c-client run"; }
  done
done
# The same points with clients spread over all three servers: followers forward writes.
for c in $CLIENTS; do
  run_loadgen resp "$c" "$ENDPOINTS" all all
done
stop_raftkv

ETCD_VERSION=
if [ "$SKIP_ETCD" = 0 ]; then
  ETCD_VERSION=$("${ETCD_BIN:-/usr/bin/etcd}" --version 2>/dev/null | sed -n 's/^etcd Version: //p')
  for p in 23791 23792 23793 23801 23802 23803; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then die "port $p is in use: is another etcd running?"; fi
  done
  log "starting etcd $ETCD_VERSION (3 members, fsync on)"
  ETCD_STARTED=1
  "$ANCHOR/etcd-start.sh" --fresh >"$LOGS/etcd-start.log" 2>&1 || { cat "$LOGS/etcd-start.log" >&2; STATUS=1; die "etcd did not start"; }
  for c in $CLIENTS; do
    run_loadgen etcd "$c" 127.0.0.1:23791,127.0.0.1:23792,127.0.0.1:23793 leader
  done
  stop_etcd
fi

# redis-benchmark against the leader of a fresh raftkv cluster.
start_raftkv redis-benchmark
RB_OUT=$LOGS/redis-benchmark.csv
log "redis-benchmark -t set,get -d 128 -c 50 -n $RB_REQUESTS against node $LEADER_ID"
child "$RB_OUT" "$LOGS/redis-benchmark.stderr" \
  timeout "$RUN_TIMEOUT" redis-benchmark -h 127.0.0.1 -p "$LEADER_PORT" -t set,get -d 128 -c 50 -n "$RB_REQUESTS" --csv
RB_RC=$?
snapshot_info "$LOGS/raft-info-redis-benchmark.txt"
stop_raftkv
RB_LINES=()
if [ $RB_RC != 0 ]; then
  STATUS=1
  RB_LINES+=("redis-benchmark FAILED (exit $RB_RC): $(tail -1 "$LOGS/redis-benchmark.stderr")")
fi
while IFS=, read -r test rps _avg _min p50 _p95 p99 max; do
  test=${test//\"/}
  [ "$test" = test ] && continue
  [ -n "$test" ] || continue
  RB_LINES+=("$(printf '%s: %s req/s, p50 %s ms, p99 %s ms, max %s ms' "$test" "$(printf '%.0f' "${rps//\"/}")" "${p50//\"/}" "${p99//\"/}" "${max//\"/}")")
done <"$RB_OUT"
if grep -qi 'error' "$LOGS/redis-benchmark.stderr" "$RB_OUT"; then
  STATUS=1
  RB_LINES+=("redis-benchmark reported errors: $(grep -i -m1 'error' "$LOGS/redis-benchmark.stderr" "$RB_OUT")")
fi

LOAD_END=$(loadavg)
top_snapshot "$LOGS/top-end.txt"

# ------------------------------------------------------------------ report

fmt_int() { # 12345.6 -> 12,346
  [ -n "$1" ] || { echo -; return; }
  awk -v x="$1" 'BEGIN { s = sprintf("%.0f", x); o = ""; while (length(s) > 3) { o = "," substr(s, length(s) - 2) o; s = substr(s, 1, length(s) - 3) } print s o }'
}
fmt_ms() { [ -n "$1" ] && printf '%.2f' "$1" || echo "-"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }
cell() { # $1 = key, $2 = value formatted; a failed run keeps its figures, marked
  if [ "${OK[$1]:-}" = 0 ]; then echo "$2 (FAILED)"; else echo "$2"; fi
}

revision() { # the commit raftkv was built from, marked when the work tree differs from it
  local r
  r=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null) || { echo '?'; return; }
  git -C "$ROOT" diff --quiet HEAD -- raft-core raft-kv raft-net Cargo.toml Cargo.lock 2>/dev/null || r="$r + uncommitted changes"
  echo "$r"
}

report() {
  local c kr ke
  echo "## kvbench: raftkv vs etcd${ETCD_VERSION:+ $ETCD_VERSION}, 3 nodes on 127.0.0.1, fsync on"
  echo
  echo "\`scripts/kvbench.sh$([ "$QUICK" = 1 ] && echo ' --quick')$([ "$SKIP_ETCD" = 1 ] && echo ' --skip-etcd')\`, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs," \
    "raftkv $(revision)${RAFTKV_ARGS:+ (serve $RAFTKV_ARGS)}. Closed loop, 128-byte SETs to distinct keys, one request in flight per" \
    "client; both driven through their leader (raftkv: \`--target first\` with the leader's address; etcd: \`--target leader\`)."
  echo "Requests per point: $(for c in $CLIENTS; do printf '%s at %s, ' "$(fmt_int "$(requests_for "$c")")" "$c"; done | sed 's/, $//')."
  echo
  echo "| clients | raftkv writes/s | p50 ms | p99 ms | etcd writes/s | p50 ms | p99 ms | ratio writes/s (raftkv/etcd) | ratio p99 (raftkv/etcd) |"
  echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for c in $CLIENTS; do
    kr=resp/$c ke=etcd/$c
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$c" \
      "$(cell "$kr" "$(fmt_int "${TPUT[$kr]:-}")")" "$(cell "$kr" "$(fmt_ms "${P50[$kr]:-}")")" "$(cell "$kr" "$(fmt_ms "${P99[$kr]:-}")")" \
      "$(cell "$ke" "$(fmt_int "${TPUT[$ke]:-}")")" "$(cell "$ke" "$(fmt_ms "${P50[$ke]:-}")")" "$(cell "$ke" "$(fmt_ms "${P99[$ke]:-}")")" \
      "$( [ "${OK[$kr]:-}" = 1 ] && [ "${OK[$ke]:-}" = 1 ] && ratio "${TPUT[$kr]}" "${TPUT[$ke]}" || echo -)" \
      "$( [ "${OK[$kr]:-}" = 1 ] && [ "${OK[$ke]:-}" = 1 ] && ratio "${P99[$kr]}" "${P99[$ke]}" || echo -)"
  done
  echo
  for c in $CLIENTS; do
    for k in resp/$c etcd/$c; do
      [ "${OK[$k]:-}" = 0 ] && echo "- FAILED ${k/resp/raftkv}: ${NOTE[$k]}"
    done
  done
  echo "- raftkv per point (clients: leader fsyncs, writes per leader fsync, CPU seconds of the 3 servers / wall seconds, snapshots installed by followers):" \
    "$(for c in $CLIENTS; do
      f=${FSYNCS[$c]:-0}
      printf '%s: %s, %s, %s s / %s s, %s; ' "$c" "$f" "$(ratio "$(requests_for "$c")" "$f")" "${CPU[$c]:-?}" \
        "$(awk -v w="$(ratio "$(requests_for "$c")" "${TPUT[resp/$c]:-0}")" 'BEGIN { if (w == "-") print "?"; else printf "%.1f", w }')" "${SNAPS[$c]:-?}"
    done | sed 's/; $//')"
  local warns
  warns=$(cat "$LOGS"/raftkv-*.log 2>/dev/null | grep -E ' (WARN|ERROR) ' | grep -vc 'peer closed the connection')
  echo "- raftkv with the clients spread over all 3 servers (\`--target all\`: followers forward writes through Raft), writes/s, p50, p99 ms:" \
    "$(for c in $CLIENTS; do printf '%s: %s, %s, %s; ' "$c" "$(cell "all/$c" "$(fmt_int "${TPUT[all/$c]:-}")")" "$(cell "all/$c" "$(fmt_ms "${P50[all/$c]:-}")")" "$(cell "all/$c" "$(fmt_ms "${P99[all/$c]:-}")")"; done | sed 's/; $//')"
  echo "- raftkv log lines at WARN/ERROR (besides peers closing at shutdown): $warns"
  echo "- redis-benchmark \`-t set,get -d 128 -c 50 -n $RB_REQUESTS\` against the raftkv leader (a fresh cluster):"
  for l in "${RB_LINES[@]}"; do echo "  - $l"; done
  echo "- fsync on this disk (4 KiB append + fdatasync in the temp dir): 200 in a row p50 $FSYNC_P50 ms, p99 $FSYNC_P99 ms;" \
    "then back to back for 2 s ($FSYNC_SN syncs) p99 $FSYNC_S99 ms, max $FSYNC_SMAX ms"
  echo "- loadavg: start $LOAD_START, end $LOAD_END"
  echo "- logs: $LOGROOT/$RUN_ID"
}

report | tee "$LOGS/report.md"
[ "$STATUS" = 0 ] || log "some runs FAILED (see above)"
exit "$STATUS"
