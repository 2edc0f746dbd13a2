# A --hook for benches/load.sh: where the connect+transaction gap lies. Starts,
# all with md5 client authentication (the issue allows md5 or SCRAM; md5 keeps
# the floor program small): PgBouncer (pgb-md5), tenantpool (tp-md5), and
# `loadgen floor` (floor-md5), the least a tokio transaction pooler can do for
# a client that connects, runs one query and leaves (no timeouts, logging,
# metrics or parsing beyond message headers). Then it runs cpu-split's
# connect cell (`pgbench -C -S -c 8`) on those (FLOOR_ONE_THREAD=1 adds
# tenantpool with worker_threads = 1, tp-md5-1t), FLOOR_ROUNDS rounds
# (default 6) of SPLIT_SECONDS, rotating the order each round, and exits.
#
#   benches/load.sh --scenarios 4 --rounds 1 --hook benches/hooks/connect-floor.sh
md5_targets=()
if [ -n "$PGBOUNCER" ]; then
    port=$(free_port)
    printf '"bench" "bench-secret"\n' >"$WORK/userlist-md5.txt"
    sed -e "s/^listen_port = .*/listen_port = $port/" -e 's/^auth_type = .*/auth_type = md5/' \
        -e "s|^auth_file = .*|auth_file = $WORK/userlist-md5.txt|" "$WORK/pgbouncer.ini" >"$WORK/pgbouncer-md5.ini"
    chmod 644 "$WORK/userlist-md5.txt" "$WORK/pgbouncer-md5.ini"
    "${RUNAS[@]}" "$PGBOUNCER" "$WORK/pgbouncer-md5.ini" >"$WORK/pgbouncer-md5.log" 2>&1 &
    PIDS+=($!)
    wait_port "$port" "$!" pgb-md5
    md5_targets+=("pgb-md5=127.0.0.1:$port:$!")
fi
port=$(free_port)
tp_config "$port" | sed -e 's/^auth_type = .*/auth_type = "md5"/' \
    -e "s/^password = \"SCRAM-SHA-256.*/password = \"bench-secret\"/" >"$WORK/tenantpool-md5.toml"
"$TENANTPOOL" --config "$WORK/tenantpool-md5.toml" >"$WORK/tenantpool-md5.log" 2>&1 &
PIDS+=($!)
wait_port "$port" "$!" tp-md5
md5_targets+=("tp-md5=127.0.0.1:$port:$!")
if [ -n "${FLOOR_ONE_THREAD:-}" ]; then # also tenantpool with worker_threads = 1
    port=$(free_port)
    sed -e "s/^listen = .*/listen = \"127.0.0.1:$port\"/" -e 's/^\[pooler\]$/[pooler]\nworker_threads = 1/' \
        "$WORK/tenantpool-md5.toml" >"$WORK/tenantpool-md5-1t.toml"
    "$TENANTPOOL" --config "$WORK/tenantpool-md5-1t.toml" >"$WORK/tenantpool-md5-1t.log" 2>&1 &
    PIDS+=($!)
    wait_port "$port" "$!" tp-md5-1t
    md5_targets+=("tp-md5-1t=127.0.0.1:$port:$!")
fi
port=$(free_port)
"$LOADGEN" floor --listen "127.0.0.1:$port" --addr "127.0.0.1:$PGPORT" --user bench --db bench \
    --password bench-secret --pool 20 >"$WORK/floor.log" 2>&1 &
PIDS+=($!)
wait_port "$port" "$!" floor-md5
md5_targets+=("floor-md5=127.0.0.1:$port:$!")
echo "== connect floor: ${md5_targets[*]}"

source "$(dirname "${BASH_SOURCE[0]}")/cpu-split.sh" --functions-only
for round in $(seq "${FLOOR_ROUNDS:-6}"); do
    k=$((round % ${#md5_targets[@]}))
    for t in "${md5_targets[@]:k}" "${md5_targets[@]:0:k}"; do
        IFS=: read -r _ port pid <<<"${t#*=}"
        split_cell "C c=8" "${t%%=*}" "$port" "$pid" -C -S -M simple -c 8 -j 2
    done
done
exit 0
