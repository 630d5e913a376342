#!/usr/bin/env bash
# img2vid past one machine, in miniature and offline: one PostgreSQL (the truth), one Redis (the doorbell),
# two front ends (`img2vid serve --dispatch celery`, no model) and two workers (`img2vid worker`, the tiny
# model), all on this machine on free ports in a temporary folder. A few jobs go in through both front ends
# with the CLI; the script prints which worker ran each, then stops everything and removes the folder.
#
#   bash examples/cluster.sh [JOBS]          (default 4; IMAGE may name another input image)
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

fronts=()
for n in 1 2; do
    p=$(port)
    img2vid serve --dispatch celery --port "$p" --log-level warning >"$tmp/front$n.log" 2>&1 &
    pids+=($!)
    fronts+=("http://127.0.0.1:$p")
done
for n in 1 2; do
    img2vid worker --model tiny --name "worker-$n" --log-level WARNING >"$tmp/worker$n.log" 2>&1 &
    pids+=($!)
done
for url in "${fronts[@]}"; do wait_healthy "$url"; done
echo "front ends: ${fronts[*]}; workers: worker-1, worker-2"

mkdir -p out/cluster
clients=()
for i in $(seq 1 "$jobs"); do
    front=${fronts[$(( (i - 1) % 2 ))]}
    IMG2VID_API_KEY=$key img2vid generate "$image" --engine "$front" --seed "$i" -o "out/cluster/clip-$i.mp4" \
        >"$tmp/client$i.log" 2>&1 &
    clients+=($!)
done
failed=0
for pid in "${clients[@]}"; do wait "$pid" || failed=1; done
[ "$failed" = 0 ] || { cat "$tmp"/client*.log; exit 1; }

echo "job (seed) -> worker that ran it:"
psql -h 127.0.0.1 -p "$pg_port" -U img2vid -d img2vid -At -F ' -> ' \
    -c "SELECT 'seed ' || seed || ' (' || left(id, 12) || ')', worker FROM jobs ORDER BY seed"
echo "clips in out/cluster/"
