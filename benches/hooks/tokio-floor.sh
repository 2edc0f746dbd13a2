# A --hook for benches/load.sh: two bare tokio byte relays in front of
# PostgreSQL as extra targets, `relay-mt` (tokio's default runtime, a worker per
# CPU) and `relay-1t` (one thread), from `loadgen relay`. They pool nothing and
# parse nothing: what they add over direct is what tokio and the two socket
# hops cost, the floor under any tokio pooler's relay path. Meant for the
# one-client cells (through them every client has its own backend):
#
#   benches/load.sh --scenarios 1 --clients 1 --hook benches/hooks/tokio-floor.sh
for variant in mt 1t; do
    port=$(free_port)
    flag=
    [ "$variant" = 1t ] && flag=--current-thread
    "$LOADGEN" relay --listen "127.0.0.1:$port" --to "127.0.0.1:$PGPORT" $flag >"$WORK/relay-$variant.log" 2>&1 &
    PIDS+=($!)
    pid=$!
    wait_port "$port" "$pid" "relay-$variant"
    EXTRA_TARGETS+=("relay-$variant=127.0.0.1:$port:$pid")
    echo "== tokio byte relay ($variant) on port $port (pid $pid)"
done
