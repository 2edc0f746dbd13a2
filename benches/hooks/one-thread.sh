# A --hook for benches/load.sh: a second tenantpool with worker_threads = 1,
# as an extra target named tp-1thread, to compare one runtime thread with the
# default (one per core) in the same run.
#
#   benches/load.sh --hook benches/hooks/one-thread.sh
TP1_PORT=$(free_port)
tp_config "$TP1_PORT" | sed 's/^\[pooler\]$/[pooler]\nworker_threads = 1/' >"$WORK/tenantpool-1thread.toml"
"$TENANTPOOL" --config "$WORK/tenantpool-1thread.toml" >"$WORK/tenantpool-1thread.log" 2>&1 &
PIDS+=($!)
TP1_PID=$!
wait_port "$TP1_PORT" "$TP1_PID" tp-1thread
EXTRA_TARGETS+=("tp-1thread=127.0.0.1:$TP1_PORT:$TP1_PID")
echo "== tenantpool, worker_threads = 1, on port $TP1_PORT (pid $TP1_PID)"
