#!/usr/bin/env bash
# img2vid's main job, offline: start an img2vid server with the tiny model, create a key, and make a
# clip through the server with the same client any Stability-protocol user has.
#
#   bash examples/quickstart.sh [IMAGE] [OUTPUT]        (defaults: examples/input.png, out/clip.mp4)
#
# PORT (default 8000) and IMG2VID_DATA (default out/server-data) may be set. The tiny model has random
# weights: the clip is noise, but every part of the path is real. Drop `--model tiny` below on a GPU.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
image=${1:-$here/input.png}
output=${2:-out/clip.mp4}
port=${PORT:-8000}
export IMG2VID_DATA=${IMG2VID_DATA:-out/server-data}

key=$(img2vid keys create --name quickstart)          # printed once; only its hash is stored

img2vid serve --model tiny --port "$port" &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true' EXIT

# Wait until the server has loaded the model and answers /healthz (or has exited).
python - "$port" "$server" <<'PY'
import os, sys, time
import httpx

port, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 180
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("the server exited before it was ready (is the port taken?)")
    try:
        if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
            sys.exit(0)
    except httpx.HTTPError:
        pass
    time.sleep(0.3)
sys.exit("the server did not become ready within 180 s")
PY

IMG2VID_API_KEY=$key img2vid generate "$image" --engine "http://127.0.0.1:$port" -o "$output"
