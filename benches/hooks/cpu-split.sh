# A --hook for benches/load.sh that measures, instead of the scenarios, where
# each pooler's CPU goes: user and kernel time per transaction (utime and stime
# from /proc/PID/stat) and thread switches per transaction (voluntary and
# involuntary, summed over /proc/PID/task/*/status), and pgbench's mean
# latency, for select-only at 1, 16 and 64 clients and for connect-per-transaction
# (-C) at 8. Targets are interleaved cell by cell, SPLIT_ROUNDS rounds
# (default 3) of SPLIT_SECONDS (default 5).
# Then it exits; load.sh stops what it started.
#
#   benches/load.sh --hook benches/hooks/cpu-split.sh
#   benches/load.sh --hook <(cat benches/hooks/one-thread.sh benches/hooks/cpu-split.sh)

split_switches() {
    cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {s += $2} END {print s + 0}'
}

split_cell() { # label name port pid pgbench-args...
    local label=$1 name=$2 port=$3 pid=$4 u0 s0 u1 s1 c0 c1 out tx
    shift 4
    c0=$(split_switches "$pid")
    read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$pid/stat")
    out=$("$PGBIN/pgbench" -n "$@" -T "${SPLIT_SECONDS:-5}" -h 127.0.0.1 -p "$port" -U bench bench 2>&1)
    read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$pid/stat")
    c1=$(split_switches "$pid")
    tx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
    if [ -z "$tx" ] || [ "$tx" -eq 0 ]; then
        echo "SPLIT $label $name: pgbench failed: $(tail -1 <<<"$out")"
        return
    fi
    awk -v l="$label" -v n="$name" -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v c=$((c1 - c0)) \
        -v t="$tx" -v hz="$(getconf CLK_TCK)" \
        -v lat="$(sed -n 's/^latency average = \([0-9.]*\) ms$/\1/p' <<<"$out")" 'BEGIN {
        printf "SPLIT %-9s %-12s %7d txns  user %6.1f  kernel %6.1f  total %6.1f us/txn  %5.2f switches/txn  latency %s ms\n",
            l, n, t, u * 1e6 / hz / t, s * 1e6 / hz / t, (u + s) * 1e6 / hz / t, c / t, lat }'
}

# Sourced with --functions-only (by connect-floor.sh): split_cell alone.
[ "${1:-}" = --functions-only ] && return 0

for round in $(seq "${SPLIT_ROUNDS:-3}"); do
    for cell in "S c=1:-S -M simple -c 1 -j 1" "S c=16:-S -M simple -c 16 -j 2" "S c=64:-S -M simple -c 64 -j 2" "C c=8:-C -S -M simple -c 8 -j 2"; do
        for t in "${TARGETS[@]}" "${EXTRA_TARGETS[@]}"; do
            IFS=: read -r _ port pid <<<"${t#*=}"
            [ -n "$pid" ] || continue # direct PostgreSQL: no pooler process
            # shellcheck disable=SC2086 # the cell's pgbench arguments are words
            split_cell "${cell%%:*}" "${t%%=*}" "$port" "$pid" ${cell#*:}
        done
    done
done
exit 0
