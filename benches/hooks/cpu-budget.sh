# A --hook for benches/load.sh that asks how much TPS any pooler could reach on
# this machine at 64 select-only clients. pgbench, the pooler and PostgreSQL
# share the CPUs; if they are saturated, the CPU everything but the pooler
# spends per transaction bounds the TPS of a pooler that cost nothing:
#
#   bound = CPU capacity per second / (busy CPU per transaction - the pooler's)
#
# Per cell and target: TPS, the machine's idle share (/proc/stat, steal left
# out of the capacity), the pooler's CPU per transaction (/proc/PID/stat) and
# the rest's, the bound, and the bound as a ratio to this target's TPS.
# BUDGET_ROUNDS rounds (default 3) of BUDGET_SECONDS (default 5), targets
# interleaved and rotated each round. Then it exits; load.sh stops what it
# started.
#
#   benches/load.sh --scenarios 1 --clients 64 --hook benches/hooks/cpu-budget.sh

budget_stat() { # prints: capacity-ticks idle-ticks (all CPUs, steal left out)
    awk '/^cpu / { print $2 + $3 + $4 + $5 + $6 + $7 + $8, $5 + $6 }' /proc/stat
}

budget_cell() { # label name port pid pgbench-args...
    local label=$1 name=$2 port=$3 pid=$4 cap0 idle0 cap1 idle1 p0=0 p1=0 out tx
    shift 4
    read -r cap0 idle0 < <(budget_stat)
    [ -n "$pid" ] && p0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    out=$("$PGBIN/pgbench" -n "$@" -T "${BUDGET_SECONDS:-5}" -h 127.0.0.1 -p "$port" -U bench bench 2>&1)
    [ -n "$pid" ] && p1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    read -r cap1 idle1 < <(budget_stat)
    tx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
    if [ -z "$tx" ] || [ "$tx" -eq 0 ]; then
        echo "BUDGET $label $name: pgbench failed: $(tail -1 <<<"$out")"
        return
    fi
    awk -v l="$label" -v n="$name" -v t="$tx" -v secs="${BUDGET_SECONDS:-5}" -v hz="$(getconf CLK_TCK)" \
        -v cap=$((cap1 - cap0)) -v idle=$((idle1 - idle0)) -v pooler=$((p1 - p0)) 'BEGIN {
        us = 1e6 / hz
        busy = (cap - idle) * us / t            # all processes, per transaction
        own = pooler * us / t                   # the pooler
        rest = busy - own                       # pgbench, PostgreSQL, the kernel for them
        capacity = cap * us / secs              # CPU-µs per second the machine gave
        bound = capacity / rest
        printf "BUDGET %-10s %-12s %7.0f tps  idle %4.1f%%  busy %6.1f  pooler %5.1f  rest %6.1f us/txn  zero-cost pooler bound %7.0f tps = %.2fx\n",
            l, n, t / secs, idle * 100 / cap, busy, own, rest, bound, bound / (t / secs) }'
}

for round in $(seq "${BUDGET_ROUNDS:-3}"); do
    for cell in "S c=64:-S -M simple -c 64 -j 2" "E c=64:-S -M extended -c 64 -j 2"; do
        all=("${TARGETS[@]}" "${EXTRA_TARGETS[@]}")
        k=$((round % ${#all[@]}))
        for t in "${all[@]:k}" "${all[@]:0:k}"; do
            IFS=: read -r _ port pid <<<"${t#*=}"
            # shellcheck disable=SC2086 # the cell's pgbench arguments are words
            budget_cell "${cell%%:*}" "${t%%=*}" "$port" "$pid" ${cell#*:}
        done
    done
done
exit 0
