#!/usr/bin/env bash
# Load benchmark: PostgreSQL direct vs tenantpool vs PgBouncer (and any extra
# pooler given with --target), in one run on this machine.
#
#   benches/load.sh            # default: 3 interleaved rounds, ~12-15 min
#   benches/load.sh --quick    # 1 round of 2 s cells, smaller idle/burst counts, ~2-3 min
#
# It starts a throwaway PostgreSQL cluster (temp dir, free port, SCRAM for TCP
# clients), tenantpool (release build) and PgBouncer in front of it with the same
# pool size (20), pool mode (transaction) and client authentication (SCRAM-SHA-256
# against the same stored verifier), then drives every target in turn, cell by
# cell and round by round, each round starting one target later (A B C, B C A,
# C A B, ...), with pgbench and with the load
# generator in benches/loadgen.rs. It prints tables with throughput, latency, the
# pooler's CPU per transaction (utime+stime from /proc/PID/stat) and its RSS
# (VmRSS), each as a ratio to PgBouncer and to direct connections. Every process
# it starts is stopped by PID on exit, and the temp dir removed.
#
# Options:
#   --quick               1 round, 2 s per cell, scale 2, 2000 idle, 1000 burst
#   --rounds N            interleaved rounds (default 3)
#   --duration S          seconds per cell (default 4)
#   --scale N             pgbench scale (default 10)
#   --idle N              idle clients in scenario 5 (default 10000)
#   --burst N             clients in the scenario 7 burst (default 2000)
#   --scenarios LIST      e.g. 1,3,7 (default all: 1-7)
#   --clients LIST        client counts of scenario 1 (default "1 16 64 256")
#   --target NAME=HOST:PORT[:PID]
#                         an extra pooler for scenarios 1-4, already running and
#                         pointed at the cluster (it must accept user bench,
#                         password bench-secret, database bench). Since the
#                         cluster is made by this script, such a pooler has to
#                         be started by a hook: see --hook.
#   --hook FILE           sourced after the cluster is up, with PGPORT, WORK and
#                         VERIFIER set; it may start poolers and append to
#                         EXTRA_TARGETS ("name=host:port:pid") and PIDS.
#   --markdown            tables as Markdown
#   --keep                keep the temp dir (logs) after the run
#
# Environment: TENANTPOOL_BIN=path runs that tenantpool binary instead of
# building one (to compare two builds, one run each, alternating).
#
# Needs: cargo, PostgreSQL server binaries with pgbench ($PG_BINDIR, or
# /usr/lib/postgresql/<newest>/bin), pgbouncer (optional: $PGBOUNCER or PATH or
# /usr/sbin). Nothing is installed; what is missing is named.
set -euo pipefail

QUICK=0 ROUNDS=3 DURATION=4 SCALE=10 IDLE_N=10000 BURST_N=2000 SCENARIOS=1,2,3,4,5,6,7
MARKDOWN=0 KEEP=0 HOOK= S1_CLIENTS="1 16 64 256"
EXTRA_TARGETS=()
declare -A SET=()
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --rounds) ROUNDS=$2; SET[rounds]=1; shift ;;
        --duration) DURATION=$2; SET[duration]=1; shift ;;
        --scale) SCALE=$2; SET[scale]=1; shift ;;
        --idle) IDLE_N=$2; SET[idle]=1; shift ;;
        --burst) BURST_N=$2; SET[burst]=1; shift ;;
        --scenarios) SCENARIOS=$2; shift ;;
        --clients) S1_CLIENTS=${2//,/ }; shift ;;
        --target) EXTRA_TARGETS+=("$2"); shift ;;
        --hook) HOOK=$2; shift ;;
        --markdown) MARKDOWN=1 ;;
        --keep) KEEP=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "load.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
if [ "$QUICK" = 1 ]; then
    [ -n "${SET[rounds]:-}" ] || ROUNDS=1
    [ -n "${SET[duration]:-}" ] || DURATION=2
    [ -n "${SET[scale]:-}" ] || SCALE=2
    [ -n "${SET[idle]:-}" ] || IDLE_N=2000
    [ -n "${SET[burst]:-}" ] || BURST_N=1000
fi
want() { [[ ",$SCENARIOS," == *",$1,"* ]]; }

cd "$(dirname "$0")/.."
ROOT=$PWD

# --- what we need -----------------------------------------------------------
missing=()
command -v cargo >/dev/null || missing+=("cargo (https://rustup.rs)")
if [ -n "${PG_BINDIR:-}" ]; then
    PGBIN=$PG_BINDIR
else
    PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
    [ -n "$PGBIN" ] || PGBIN=$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/x)")
fi
for b in initdb postgres psql pgbench; do
    [ -x "$PGBIN/$b" ] || missing+=("$b (PostgreSQL server + client: apt-get install postgresql postgresql-contrib, or set PG_BINDIR)")
done
PGBOUNCER=${PGBOUNCER:-$(command -v pgbouncer || echo /usr/sbin/pgbouncer)}
if [ ! -x "$PGBOUNCER" ]; then
    echo "load.sh: PgBouncer not found (apt-get install pgbouncer, or set PGBOUNCER); running without it" >&2
    PGBOUNCER=
fi
if [ ${#missing[@]} -gt 0 ]; then
    printf 'load.sh: missing: %s\n' "${missing[@]}" >&2
    exit 1
fi

# Raise the descriptor limit for the idle-client scenario (it is inherited by
# everything started below).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $((IDLE_N + 1000)) ]; then
    echo "load.sh: open-file limit $(ulimit -n) is too low for --idle $IDLE_N; lowering it" >&2
    IDLE_N=$(( $(ulimit -n) - 1000 ))
fi

# --- build ------------------------------------------------------------------
echo "== building (release): tenantpool and the load generator"
if [ -n "${TENANTPOOL_BIN:-}" ]; then
    TENANTPOOL=$TENANTPOOL_BIN
else
    cargo build --release --quiet --bin tenantpool
    TENANTPOOL=${CARGO_TARGET_DIR:-$ROOT/target}/release/tenantpool
fi
LOADGEN=$(cargo bench --quiet --bench loadgen --no-run --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*\/loadgen-[^"]*\)".*/\1/p' | tail -1)
[ -x "$LOADGEN" ] || { echo "load.sh: could not build benches/loadgen.rs" >&2; exit 1; }

# --- processes and cleanup --------------------------------------------------
WORK=$(mktemp -d /tmp/tenantpool-bench.XXXXXX)
chmod 755 "$WORK"
RUNAS=()
if [ "$(id -u)" = 0 ]; then
    # PostgreSQL refuses to run as root, PgBouncer too.
    runas_user=postgres
    id postgres >/dev/null 2>&1 || runas_user=nobody
    chown "$runas_user" "$WORK"
    RUNAS=(setpriv --reuid="$runas_user" --regid="$(id -g "$runas_user")" --init-groups)
fi
PIDS=()
cleanup() {
    local rc=$?
    set +e
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        kill -TERM "${PIDS[i]}" 2>/dev/null
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
    done
    if [ "$KEEP" = 1 ]; then
        echo "load.sh: kept $WORK"
    else
        rm -rf "$WORK"
    fi
    exit $rc
}
trap cleanup EXIT
forget_pid() { # a process we started has been waited for: never signal its PID again
    local keep=() p
    for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}
trap 'exit 130' INT TERM

PICKED=" "
free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 20000))
        [[ "$PICKED" == *" $p "* ]] && continue
        (: </dev/tcp/127.0.0.1/$p) 2>/dev/null && continue
        PICKED+="$p "
        echo "$p"
        return
    done
}
wait_port() { # port pid what
    for _ in $(seq 300); do
        (: </dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || { echo "load.sh: $3 exited; its log:" >&2; tail -20 "$WORK/$3.log" >&2; exit 1; }
        sleep 0.1
    done
    echo "load.sh: $3 did not listen on $1" >&2
    exit 1
}

# --- PostgreSQL ---------------------------------------------------------------
PGPORT=$(free_port)
export PGPASSWORD=bench-secret PGCONNECT_TIMEOUT=10
echo "== PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on port $PGPORT ($WORK)"
"${RUNAS[@]}" "$PGBIN/initdb" -D "$WORK/pg" -U postgres -E UTF8 --no-sync \
    --auth-local=trust --auth-host=scram-sha-256 >"$WORK/initdb.log" 2>&1 ||
    { cat "$WORK/initdb.log" >&2; exit 1; }
cat >>"$WORK/pg/postgresql.conf" <<EOF
port = $PGPORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$WORK'
max_connections = 600
shared_buffers = 256MB
password_encryption = 'scram-sha-256'
# A throwaway cluster: durability off, so the runs measure CPU, not the disk.
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
"${RUNAS[@]}" "$PGBIN/postgres" -D "$WORK/pg" >"$WORK/postgres.log" 2>&1 &
PIDS+=($!)
PG_PID=$!
wait_port "$PGPORT" "$PG_PID" postgres
psql_su() { "$PGBIN/psql" -h "$WORK" -p "$PGPORT" -U postgres -d "${2:-postgres}" -Atqc "$1"; }
for _ in $(seq 50); do psql_su "select 1" >/dev/null 2>&1 && break; sleep 0.1; done
psql_su "create role bench login password 'bench-secret'"
psql_su "create database bench owner bench"
VERIFIER=$(psql_su "select rolpassword from pg_authid where rolname = 'bench'")
echo "== pgbench -i -s $SCALE"
"$PGBIN/pgbench" -i -q -s "$SCALE" -h 127.0.0.1 -p "$PGPORT" -U bench bench >"$WORK/pgbench-init.log" 2>&1 ||
    { cat "$WORK/pgbench-init.log" >&2; exit 1; }
ACCOUNTS=$((SCALE * 100000))

# --- tenantpool ---------------------------------------------------------------
tp_config() { # listen-port [extra toml]
    cat <<EOF
[pooler]
listen = "127.0.0.1:$1"
max_client_connections = $((IDLE_N + BURST_N + 1000))
auth_type = "scram-sha-256"

[[users]]
name = "bench"
password = "$VERIFIER"

[databases.bench]
host = "127.0.0.1"
port = $PGPORT
user = "bench"
password = "bench-secret"
pool_size = 20
pool_mode = "transaction"
tls = "disable"
${2:-}
EOF
}
TP_PORT=$(free_port)
tp_config "$TP_PORT" >"$WORK/tenantpool.toml"
"$TENANTPOOL" --config "$WORK/tenantpool.toml" >"$WORK/tenantpool.log" 2>&1 &
PIDS+=($!)
TP_PID=$!
wait_port "$TP_PORT" "$TP_PID" tenantpool
TARGETS=("direct=127.0.0.1:$PGPORT:" "tenantpool=127.0.0.1:$TP_PORT:$TP_PID")
echo "== tenantpool $(git -C "$ROOT" describe --always --dirty 2>/dev/null) on port $TP_PORT (pid $TP_PID)"

# A second instance for scenario 6, with a tenant-scoped database and the
# metrics endpoint (for the tenant SET counters), so the main one runs with
# the default configuration (no metrics).
if want 6; then
    TPM_PORT=$(free_port) TPM_METRICS=$(free_port)
    tp_config "$TPM_PORT" "
[databases.bench_tenant]
host = \"127.0.0.1\"
port = $PGPORT
dbname = \"bench\"
user = \"bench\"
password = \"bench-secret\"
pool_size = 20
pool_mode = \"transaction\"
tls = \"disable\"

[databases.bench_tenant.tenant]
source = \"user_suffix\"

[metrics]
listen = \"127.0.0.1:$TPM_METRICS\"" >"$WORK/tenantpool-tenants.toml"
    "$TENANTPOOL" --config "$WORK/tenantpool-tenants.toml" >"$WORK/tenantpool-tenants.log" 2>&1 &
    PIDS+=($!)
    TPM_PID=$!
    wait_port "$TPM_PORT" "$TPM_PID" tenantpool-tenants
fi

# --- PgBouncer ----------------------------------------------------------------
PGB_PREPARED=0
if [ -n "$PGBOUNCER" ]; then
    PGB_PORT=$(free_port)
    PGB_VERSION=$("$PGBOUNCER" --version | awk 'NR==1 {print $2}')
    printf '"bench" "%s"\n' "$VERIFIER" >"$WORK/userlist.txt"
    prepared=
    if [ "$(printf '%s\n1.21\n' "$PGB_VERSION" | sort -V | head -1)" = 1.21 ]; then
        prepared="max_prepared_statements = 200"
        PGB_PREPARED=1
    fi
    cat >"$WORK/pgbouncer.ini" <<EOF
[databases]
bench = host=127.0.0.1 port=$PGPORT dbname=bench

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGB_PORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $WORK/userlist.txt
pool_mode = transaction
default_pool_size = 20
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = $((IDLE_N + BURST_N + 1000))
listen_backlog = 4096
ignore_startup_parameters = extra_float_digits
$prepared
EOF
    chmod 644 "$WORK/userlist.txt" "$WORK/pgbouncer.ini"
    "${RUNAS[@]}" "$PGBOUNCER" "$WORK/pgbouncer.ini" >"$WORK/pgbouncer.log" 2>&1 &
    PIDS+=($!)
    PGB_PID=$!
    wait_port "$PGB_PORT" "$PGB_PID" pgbouncer
    TARGETS+=("pgbouncer=127.0.0.1:$PGB_PORT:$PGB_PID")
    echo "== PgBouncer $PGB_VERSION on port $PGB_PORT (pid $PGB_PID)"
fi

[ -z "$HOOK" ] || source "$HOOK"
TARGETS+=("${EXTRA_TARGETS[@]}")

# --- measuring ------------------------------------------------------------------
CLK_TCK=$(getconf CLK_TCK)
STAMP=$(date +%Y%m%d-%H%M%S)
mkdir -p "$ROOT/target/bench-results"
RESULTS=$ROOT/target/bench-results/load-$STAMP.tsv
: >"$RESULTS"
note() { printf 'note=%s\n' "$*" >>"$RESULTS"; }
record() { # fields...
    local IFS=$'\t'
    echo "$*" >>"$RESULTS"
}
cpu_ticks() { [ -n "$1" ] && awk '{print $14 + $15}' "/proc/$1/stat" || echo; }
rss_kb() { [ -n "$1" ] && awk '/^VmRSS:/ {print $2}' "/proc/$1/status" || echo; }
field() { sed -n "s/.*\b$1=\([^ \t]*\).*/\1/p" <<<"$2"; }
split_target() { # name=host:port:pid -> T_NAME T_HOST T_PORT T_PID
    T_NAME=${1%%=*}
    local rest=${1#*=}
    T_HOST=${rest%%:*}
    rest=${rest#*:}
    T_PORT=${rest%%:*}
    T_PID=
    [[ "$rest" == *:* ]] && T_PID=${rest#*:}
    return 0
}

# pgbench against one target; prints a record's fields.
run_pgbench() { # cell target-spec round pgbench-args...
    local cell=$1 round=$3
    split_target "$2"
    shift 3
    local logdir=$WORK/pglog
    rm -rf "$logdir" && mkdir -p "$logdir"
    local c0 c1 out rc=0
    c0=$(cpu_ticks "$T_PID")
    # Connecting 256 clients straight to PostgreSQL (SCRAM, a fork each) takes
    # about a second here, and pgbench counts it against -T: give it the time.
    local secs=$DURATION
    [[ " $* " =~ " -c "([0-9]+)" " ]] && [ "${BASH_REMATCH[1]}" -ge 128 ] && secs=$((DURATION + 2))
    out=$("$PGBIN/pgbench" -n -h "$T_HOST" -p "$T_PORT" -U bench -T "$secs" \
        -l --log-prefix="$logdir/log" "$@" bench 2>&1) || rc=$?
    c1=$(cpu_ticks "$T_PID")
    local tps txns failed lat cpu=
    tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out" | head -1)
    txns=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
    failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' <<<"$out")
    failed=${failed:-0}
    if [ "$rc" != 0 ] || [ -z "$tps" ]; then
        failed=$((failed + 1))
        { echo "--- $cell / $T_NAME / round $round: pgbench exit $rc"; echo "$out" | tail -5; } >>"$WORK/errors.log"
        echo "   ! $T_NAME: pgbench failed (exit $rc): $(grep -m1 -i 'error' <<<"$out")" >&2
    fi
    lat=$("$LOADGEN" pglog "$logdir"/log* 2>/dev/null || true)
    [ -n "$c0" ] && cpu=$(( (c1 - c0) * 1000000 / CLK_TCK ))
    secs=0
    [ -n "$tps" ] && [ -n "$txns" ] && secs=$(awk -v n="$txns" -v t="$tps" 'BEGIN { if (t > 0) printf "%.3f", n / t; else print 0 }')
    record kind=tps "cell=$cell" "target=$T_NAME" "round=$round" "txns=${txns:-0}" "seconds=$secs" \
        "tps=${tps:-0}" "mean_us=$(field mean_us "$lat")" "p50_us=$(field p50_us "$lat")" \
        "p99_us=$(field p99_us "$lat")" "cpu_us=$cpu" "rss_kb=$(rss_kb "$T_PID")" "errors=$failed"
    printf '   %-12s %9.0f tps  p99 %6.2f ms  %s\n' "$T_NAME" "${tps:-0}" \
        "$(awk -v v="$(field p99_us "$lat")" 'BEGIN { print (v + 0) / 1000 }')" \
        "$([ -n "$cpu" ] && [ "${txns:-0}" -gt 0 ] && awk -v c="$cpu" -v n="$txns" 'BEGIN { printf "%.1f µs CPU/txn", c / n }')"
    rm -rf "$logdir"
}

# One cell: every target in turn (targets named in $2..., all when none).
cell() { # round cell-name "pgbench args" [target-names...]
    local round=$1 name=$2 args=$3
    shift 3
    echo "-- $name (round $round)"
    for t in "${ORDER[@]}"; do
        if [ $# -gt 0 ] && [[ " $* " != *" ${t%%=*} "* ]]; then continue; fi
        # shellcheck disable=SC2086
        run_pgbench "$name" "$t" "$round" $args
    done
}

idle_cell() { # round target-spec
    local round=$1 name="S5 $IDLE_N idle + 32 active -S"
    split_target "$2"
    local base with rss0 rss1 ready held lg
    echo "-- $name: $T_NAME (round $round)"
    run_pgbench "$name (no idle)" "$2" "$round" -S -c 32 -j 2
    base=$(tail -1 "$RESULTS")
    rss0=$(rss_kb "$T_PID")
    "$LOADGEN" idle --addr "$T_HOST:$T_PORT" --user bench --db bench --password bench-secret \
        --count "$IDLE_N" >"$WORK/idle.out" 2>&1 &
    lg=$!
    PIDS+=($lg)
    for _ in $(seq 1200); do
        grep -q '^ready' "$WORK/idle.out" 2>/dev/null && break
        kill -0 "$lg" 2>/dev/null || break
        sleep 0.25
    done
    ready=$(grep '^ready' "$WORK/idle.out" || true)
    held=$("$LOADGEN" sockets "$T_PORT")
    sleep 1
    rss1=$(rss_kb "$T_PID")
    echo "   $T_NAME: $ready; pooler holds $held client sockets; RSS $rss0 -> $rss1 kB"
    run_pgbench "$name (idle)" "$2" "$round" -S -c 32 -j 2
    with=$(tail -1 "$RESULTS")
    kill -TERM "$lg" 2>/dev/null || true
    wait "$lg" 2>/dev/null || true
    forget_pid "$lg"
    for _ in $(seq 300); do [ "$("$LOADGEN" sockets "$T_PORT")" -le 2 ] && break; sleep 0.1; done
    local ierr
    ierr=$(field errors "$ready")
    record kind=idle "cell=$name" "target=$T_NAME" "round=$round" "held=$held" \
        "rss_before_kb=$rss0" "rss_idle_kb=$rss1" \
        "tps_base=$(field tps "$base")" "tps_idle=$(field tps "$with")" \
        "p99_base_us=$(field p99_us "$base")" "p99_idle_us=$(field p99_us "$with")" \
        "errors=$(( ${ierr:-1} + $(field errors "$base") + $(field errors "$with") ))"
    printf '   %-12s no idle %7.0f tps, with idle %7.0f tps; %s B RSS per idle client\n' "$T_NAME" \
        "$(field tps "$base")" "$(field tps "$with")" \
        "$(awk -v a="$rss0" -v b="$rss1" -v n="$held" 'BEGIN { if (n > 0) printf "%.0f", (b - a) * 1024 / n; else print "?" }')"
}

tenant_cell() { # round clients
    local round=$1 clients=$2 variant db tenants out
    local conns=$((clients > 50 ? clients : 50))
    local name="S6 -S, $clients busy of $conns connections (loadgen)"
    echo "-- $name (round $round)"
    local variants=("no tenant source" "1 tenant" "50 tenants") k=$(((round - 1) % 3))
    for variant in "${variants[@]:k}" "${variants[@]:0:k}"; do
        case $variant in
            "no tenant source") db=bench tenants=0 ;;
            "1 tenant") db=bench_tenant tenants=1 ;;
            *) db=bench_tenant tenants=50 ;;
        esac
        out=$("$LOADGEN" load --addr "127.0.0.1:$TPM_PORT" --user bench --db "$db" --password bench-secret \
            --clients "$clients" --connections "$conns" --seconds "$DURATION" --tenants "$tenants" --accounts "$ACCOUNTS" \
            --pid "$TPM_PID" --pg-pid "$PG_PID" --metrics "127.0.0.1:$TPM_METRICS" 2>&1) || true
        # shellcheck disable=SC2086
        record kind=tenants "cell=$name" "target=tenantpool: $variant" "round=$round" $(sed 's/first_error=.*//' <<<"$out")
        printf '   %-28s %s\n' "$variant" "$(cut -c1-110 <<<"$out")"
    done
}

burst_cell() { # round target-spec
    local round=$1 name="S7 burst of $BURST_N clients" out
    split_target "$2"
    out=$("$LOADGEN" burst --addr "$T_HOST:$T_PORT" --user bench --db bench --password bench-secret \
        --clients "$BURST_N" --pg "127.0.0.1:$PGPORT" --pid "$T_PID" --accounts "$ACCOUNTS" 2>&1) || true
    # shellcheck disable=SC2086
    record kind=burst "cell=$name" "target=$T_NAME" "round=$round" $(sed 's/first_error=.*//' <<<"$out")
    echo "   $T_NAME: $out"
    sleep 1
}

HOST_INFO="$(nproc) CPUs ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $(uname -sr)"
note "$(date -u '+%Y-%m-%d %H:%M UTC'); $HOST_INFO; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
note "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') (fsync off), pgbench scale $SCALE; tenantpool ${TENANTPOOL_BIN:-$(git describe --always --dirty 2>/dev/null)}; PgBouncer ${PGB_VERSION:-absent}; pool_size 20, transaction mode, SCRAM-SHA-256 with a stored verifier"
note "$ROUNDS round(s) of ${DURATION} s per cell, targets interleaved per cell, each round starting one target later; pgbench -j 2 (-j = -c for -M prepared)"

echo "== warm-up"
for t in "${TARGETS[@]}"; do
    split_target "$t"
    "$PGBIN/pgbench" -n -S -c 20 -j 2 -T 1 -h "$T_HOST" -p "$T_PORT" -U bench bench >/dev/null 2>&1 ||
        { echo "load.sh: warm-up against $T_NAME failed" >&2; exit 1; }
done

for round in $(seq "$ROUNDS"); do
    echo "== round $round of $ROUNDS"
    # Each round starts one target later, so none always runs first, or always
    # right after direct PostgreSQL (whose -C cells leave backends exiting as
    # the next target starts: that one measured 6-11% more CPU per connection).
    k=$(((round - 1) % ${#TARGETS[@]}))
    ORDER=("${TARGETS[@]:k}" "${TARGETS[@]:0:k}")
    if want 1; then
        for mode in simple extended; do
            for c in $S1_CLIENTS; do
                cell "$round" "S1 -S -M $mode c=$c" "-S -M $mode -c $c -j $((c < 2 ? c : 2))"
            done
        done
    fi
    if want 2; then
        prepared_targets=()
        for t in "${TARGETS[@]}"; do
            [ "${t%%=*}" = pgbouncer ] && [ "$PGB_PREPARED" = 0 ] && continue
            prepared_targets+=("${t%%=*}")
        done
        for c in 1 16 64; do
            cell "$round" "S2 -S -M prepared c=$c" "-S -M prepared -c $c -j $c" "${prepared_targets[@]}"
        done
    fi
    if want 3; then cell "$round" "S3 TPC-B c=64" "-M simple -c 64 -j 2"; fi
    if want 4; then cell "$round" "S4 -C -S c=8 (conn/s)" "-C -S -M simple -c 8 -j 2"; fi
    if want 5; then
        for t in "${ORDER[@]}"; do
            case ${t%%=*} in tenantpool|pgbouncer) idle_cell "$round" "$t" ;; esac
        done
    fi
    if want 6; then
        # 50 connections (one per tenant in the 50-tenant variant, the same
        # 50 in the others), each transaction on a random free one. At 16 at
        # a time there are idle servers for affinity to choose from; at 64
        # every returned server goes straight to the longest waiter, whatever
        # its tenant.
        tenant_cell "$round" 16
        tenant_cell "$round" 64
    fi
    if want 7; then
        echo "-- S7 burst of $BURST_N clients (round $round)"
        for t in "${ORDER[@]}"; do
            case ${t%%=*} in tenantpool|pgbouncer) burst_cell "$round" "$t" ;; esac
        done
    fi
done

if want 2 && [ -n "$PGBOUNCER" ] && [ "$PGB_PREPARED" = 0 ]; then
    note "S2: PgBouncer $PGB_VERSION not run: named prepared statements in transaction mode need PgBouncer 1.21+ (max_prepared_statements)"
fi
for f in tenantpool tenantpool-tenants pgbouncer; do
    [ -f "$WORK/$f.log" ] && note "$f log: $(wc -l <"$WORK/$f.log") lines, $(grep -ciE 'error|warn|fatal' "$WORK/$f.log" || true) with error/warn/fatal"
done
[ -f "$WORK/errors.log" ] && cp "$WORK/errors.log" "${RESULTS%.tsv}.errors.log"

echo
echo "== results ($RESULTS)"
echo
args=()
[ "$MARKDOWN" = 1 ] && args+=(--markdown)
"$LOADGEN" report "$RESULTS" "${args[@]}" | tee "${RESULTS%.tsv}.txt"
