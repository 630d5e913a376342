#!/usr/bin/env bash
# img2vid past one machine, in miniature and offline: one PostgreSQL (the truth), one Redis (the doorbell),
# two front ends (`img2vid serve --dispatch celery`, no model loaded) and two workers of two model families
# (`img2vid worker --model svd=tiny` and `--model wan=tiny-wan2.2-ti2v-5b`, tiny random models), all on this
# machine on free ports in a temporary folder. The first front end is started without --model and admits the
# models the live workers hold; the second names both. Jobs of both models go in through both front ends
# with the CLI; the script prints which worker ran each (every svd job on the svd worker, every wan job on
# the wan worker), then stops everything and removes the folder.
#
#   bash examples/cluster.sh [JOBS]          (default 4, alternating svd and wan; IMAGE may name another image)
#
# Needs redis-server and PostgreSQL's initdb/pg_ctl on the machine (PostgreSQL runs as the `postgres` user
# when this runs as root). On real machines the same commands run on separate hosts: README, "Many GPUs".
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
jobs=${1:-4}
image=${IMAGE:-$here/input.png}
tmp=$(mktemp -d)
chmod 755 "$tmp"
pids=()
pg_bin=$(dirname "$(ls /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null | sort -V | tail -n 1)")
as_pg=()
[ "$(id -u)" = 0 ] && as_pg=(runuser -u postgres --) && chown postgres "$tmp"

cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    [ -f "$tmp/pg/postmaster.pid" ] && "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$tmp/pg" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT

port() { python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_healthy() {  # URL
    python - "$1" <<'PY'
import sys, time
import httpx
deadline = time.monotonic() + 180
while time.monotonic() < deadline:
    try:
        if httpx.get(sys.argv[1] + "/healthz", timeout=2).status_code == 200:
            sys.exit(0)
    except httpx.HTTPError:
        pass
    time.sleep(0.3)
sys.exit(f"{sys.argv[1]} did not become healthy within 180 s")
PY
}
wait_models() {  # URL MODEL...: until /healthz says a live worker holds each model
    python - "$@" <<'PY'
import sys, time
import httpx
url, wanted = sys.argv[1], sys.argv[2:]
deadline = time.monotonic() + 180
while time.monotonic() < deadline:
    models = httpx.get(url + "/healthz", timeout=2).json().get("models", {})
    if all(models.get(name, {}).get("held") for name in wanted):
        sys.exit(0)
    time.sleep(0.3)
sys.exit(f"{url} does not see live workers for {wanted} within 180 s: {models}")
PY
}

pg_port=$(port)
redis_port=$(port)
echo "PostgreSQL on 127.0.0.1:$pg_port, Redis on 127.0.0.1:$redis_port, files in $tmp"
"${as_pg[@]}" "$pg_bin/initdb" -D "$tmp/pg" -A trust -U img2vid --no-sync >/dev/null
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$tmp/pg" -w -l "$tmp/pg.log" \
    -o "-p $pg_port -k $tmp -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
psql -h 127.0.0.1 -p "$pg_port" -U img2vid -d postgres -qc "CREATE DATABASE img2vid"
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" >"$tmp/redis.log" 2>&1 &
pids+=($!)

export IMG2VID_DATABASE_URL="postgresql+psycopg://img2vid@127.0.0.1:$pg_port/img2vid"
export IMG2VID_BROKER_URL="redis://127.0.0.1:$redis_port/0"
export IMG2VID_DATA="$tmp/data"

key=$(img2vid keys create --name cluster)     # one store: the key works on every front end

# Front end 1 admits what live workers hold (no --model); front end 2 admits exactly the models it names.
fronts=()
for n in 1 2; do
    p=$(port)
    models=()
    [ "$n" = 2 ] && models=(--model svd=tiny --model wan=tiny-wan2.2-ti2v-5b)
    img2vid serve --dispatch celery --port "$p" "${models[@]}" --log-level warning >"$tmp/front$n.log" 2>&1 &
    pids+=($!)
    fronts+=("http://127.0.0.1:$p")
done
# One worker per model (on real machines, one per GPU): each consumes only its model's doorbell queue.
img2vid worker --model svd=tiny --name svd-worker --log-level WARNING >"$tmp/worker-svd.log" 2>&1 &
pids+=($!)
img2vid worker --model wan=tiny-wan2.2-ti2v-5b --name wan-worker --log-level WARNING >"$tmp/worker-wan.log" 2>&1 &
pids+=($!)
for url in "${fronts[@]}"; do wait_healthy "$url"; wait_models "$url" svd wan; done
echo "front ends: ${fronts[*]}; workers: svd-worker (svd), wan-worker (wan)"

mkdir -p out/cluster
clients=()
for i in $(seq 1 "$jobs"); do
    front=${fronts[$(( (i - 1) / 2 % 2 ))]}
    if [ $(( i % 2 )) = 1 ]; then
        args=(--model svd)
    else
        args=(--model wan --prompt "the camera slowly pans across the scene")
    fi
    IMG2VID_API_KEY=$key img2vid generate "$image" --engine "$front" "${args[@]}" --seed "$i" \
        -o "out/cluster/clip-$i.mp4" >"$tmp/client$i.log" 2>&1 &
    clients+=($!)
done
failed=0
for pid in "${clients[@]}"; do wait "$pid" || failed=1; done
[ "$failed" = 0 ] || { cat "$tmp"/client*.log; exit 1; }

echo "job (model, seed) -> worker that ran it:"
psql -h 127.0.0.1 -p "$pg_port" -U img2vid -d img2vid -At -F ' -> ' \
    -c "SELECT model || ', seed ' || seed || ' (' || left(id, 12) || ')', worker FROM jobs ORDER BY seed"
misrouted=$(psql -h 127.0.0.1 -p "$pg_port" -U img2vid -d img2vid -At \
    -c "SELECT count(*) FROM jobs WHERE worker IS DISTINCT FROM model || '-worker'")
[ "$misrouted" = 0 ] || { echo "$misrouted job(s) ran on a worker of another model" >&2; exit 1; }
echo "every job ran on a worker of its model; clips in out/cluster/"
