"""Benchmark of the img2vid server: result-polling throughput and latency while a job runs, and submit
latency, on loopback. Writes ``bench/results/server.md``.

Two scenarios: a job held running by an engine that only waits (the server's own cost), and a job of
the tiny model computing on the CPU (the server sharing the cores with real work). Polls are driven by
``wrk`` when it is installed (closed loop, N connections), else by an asyncio httpx load generator.

    python bench/server.py [--duration 10] [--connections 8 32] [--scenarios held tiny]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "server.md"
SUBMIT = "/v2beta/image-to-video"


def held_job_engine():  # noqa: ANN201 - imported by the server process through IMG2VID_ENGINE_FACTORY
    """An engine whose job stays running (waiting, using no CPU) until the server stops."""
    from img2vid.engines.base import raise_if_cancelled
    from img2vid.fitting import PROTOCOL_SIZES

    class HeldJob:
        size_rule = PROTOCOL_SIZES

        def generate(self, request, progress=None, cancel=None):  # noqa: ANN001, ANN202
            if progress is not None:
                progress(0.5, "held")
            while True:
                raise_if_cancelled(cancel)
                time.sleep(0.05)

    return HeldJob()


def _png(width: int = 1024, height: int = 576) -> bytes:
    from PIL import Image

    # A photo-like size on the wire: a gradient with noise compresses about as badly as a photograph.
    y, x = np.mgrid[0:height, 0:width]
    noise = np.random.default_rng(0).integers(0, 24, size=(height, width, 3))
    image = (np.stack([x * 255 // width, y * 255 // height, (x + y) % 256], axis=-1) + noise).clip(0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self, data: Path, args: list[str], env: dict[str, str]) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "bench")]), **env}
        self.key = subprocess.run(
            [sys.executable, "-m", "img2vid", "keys", "create", "--name", "bench", "--data", str(data)],
            env=full_env, capture_output=True, text=True, check=True,
        ).stdout.strip()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "img2vid", "serve", "--port", str(self.port), "--data", str(data),
             "--rate-limit", "0", "--log-level", "warning", *args],
            env=full_env,
        )
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit("the server did not start")
            time.sleep(0.1)

    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.key}"}

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def submit_latency(server: Server, count: int, image: bytes) -> dict[str, float]:
    times = []
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for _ in range(count):
            started = time.perf_counter()
            answer = client.post(SUBMIT, headers=server.headers(), files={"image": ("i.png", image, "image/png")})
            times.append((time.perf_counter() - started) * 1000)
            assert answer.status_code == 200, answer.text
    return {"n": count, "p50": _percentile(times, 50), "p99": _percentile(times, 99), "max": max(times)}


def _wrk(url: str, headers: dict[str, str], connections: int, duration: float) -> dict[str, float]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{int(duration)}s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    out = subprocess.run(command + [url], capture_output=True, text=True, check=True).stdout

    def ms(text: str) -> float:
        number, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
        return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50": ms(latency["50"]),
        "p99": ms(latency["99"]),
        "requests": float(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
        "errors": float(non2xx.group(1)) if non2xx else 0.0,
    }


async def _httpx_load(url: str, headers: dict[str, str], connections: int, duration: float) -> dict[str, float]:
    times: list[float] = []
    bad = 0
    stop_at = time.perf_counter() + duration
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=10) as client:

        async def one() -> None:
            nonlocal bad
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                answer = await client.get(url)
                times.append((time.perf_counter() - started) * 1000)
                bad += answer.status_code != 202

        await asyncio.gather(*(one() for _ in range(connections)))
    return {"rps": len(times) / duration, "p50": _percentile(times, 50), "p99": _percentile(times, 99),
            "requests": float(len(times)), "errors": float(bad)}


def poll_load(server: Server, job_id: str, connections: int, duration: float) -> dict[str, float]:
    url = f"{server.url}{SUBMIT}/result/{job_id}"
    if shutil.which("wrk"):
        result = _wrk(url, server.headers(), connections, duration)
        result["tool"] = "wrk"  # type: ignore[assignment]
    else:
        result = asyncio.run(_httpx_load(url, server.headers(), connections, duration))
        result["tool"] = "httpx"  # type: ignore[assignment]
    return result


def scenario(name: str, args: list[str], env: dict[str, str], fields: dict[str, str], opts: argparse.Namespace,
             image: bytes) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        server = Server(Path(folder), args, env)
        try:
            with httpx.Client(base_url=server.url, timeout=60) as client:
                job_id = client.post(SUBMIT, headers=server.headers(), data=fields,
                                     files={"image": ("i.png", image, "image/png")}).json()["id"]
                deadline = time.monotonic() + 120
                while client.get(f"{SUBMIT}/result/{job_id}", headers=server.headers()).json().get("progress", 0) == 0:
                    if time.monotonic() > deadline:
                        raise SystemExit("the job did not start")
                    time.sleep(0.2)
                polls = {c: poll_load(server, job_id, c, opts.duration) for c in opts.connections}
                submits = submit_latency(server, opts.submits, image)
                still = client.get(f"{SUBMIT}/result/{job_id}", headers=server.headers())
                running = still.status_code == 202
        finally:
            server.stop()
    return {"name": name, "polls": polls, "submits": submits, "job_ran_throughout": running}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of polling per measurement")
    parser.add_argument("--connections", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--submits", type=int, default=20)
    parser.add_argument("--scenarios", nargs="+", choices=["held", "tiny"], default=["held", "tiny"],
                        help="held: a job held running by a waiting engine; tiny: the tiny model computing")
    opts = parser.parse_args()
    image = _png()
    load_before = os.getloadavg()
    results = []
    if "held" in opts.scenarios:
        results.append(scenario("a job held running (engine waiting, no CPU)", [],
                                {"IMG2VID_ENGINE_FACTORY": "server:held_job_engine"}, {}, opts, image))
    if "tiny" in opts.scenarios:
        results.append(scenario("a tiny-model job computing on the CPU", ["--model", "tiny"], {},
                                {"steps": "200", "frames": "2"}, opts, image))
    write_report(results, opts, load_before, len(image))


def write_report(results: list[dict], opts: argparse.Namespace, load_before: tuple[float, float, float], image_size: int) -> None:
    lines = [
        "# Server benchmark",
        "",
        f"`python bench/server.py` on {platform.node() or 'this machine'}: {os.cpu_count()} CPU cores, "
        f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. "
        f"Load average before the run: {load_before[0]:.2f} (the cores are shared with other work, so "
        "figures vary from run to run).",
        "",
        "Server: `img2vid serve` (uvicorn, one process, SQLite job store), rate limit off. Polls: "
        f"`GET /v2beta/image-to-video/result/{{id}}` of a running job (answer 202), {opts.duration:g} s per "
        "row, closed loop with N keep-alive connections on loopback; the load generator runs on the same "
        f"cores. Submits: {opts.submits} sequential `POST /v2beta/image-to-video` of a 1024x576 PNG "
        f"({image_size / 1e6:.1f} MB) while the job runs.",
        "",
        "Target: at least 1,000 polls per second with p99 under 50 ms.",
        "",
        "| scenario | connections | tool | polls/s | p50 ms | p99 ms | non-202 | target met |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for result in results:
        for connections, poll in result["polls"].items():
            lines.append(
                f"| {result['name']} | {connections} | {poll['tool']} | {poll['rps']:.0f} | {poll['p50']:.1f} | "
                f"{poll['p99']:.1f} | {poll['errors']:.0f} | "
                f"{'yes' if poll['rps'] >= 1000 and poll['p99'] < 50 and not poll['errors'] else 'no'} |"
            )
    lines += ["", "| scenario | submits | p50 ms | p99 ms | max ms |", "| --- | ---: | ---: | ---: | ---: |"]
    for result in results:
        s = result["submits"]
        lines.append(f"| {result['name']} | {s['n']} | {s['p50']:.1f} | {s['p99']:.1f} | {s['max']:.1f} |")
    lines += [""]
    for result in results:
        lines.append(f"- {result['name']}: the job was still running at the end: {result['job_ran_throughout']}.")
    lines.append("")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
