"""Benchmark of the img2vid server: result-polling throughput and latency while a job runs, and submit
latency, on loopback. Writes ``bench/results/server.md``.

Two scenarios: a job held running by an engine that only waits (the server's own cost), and a job of
the tiny model computing on the CPU (the server sharing the cores with real work). Polls are driven by
``wrk`` when it is installed (closed loop, N connections), else by an asyncio httpx load generator.

    python bench/server.py [--duration 10] [--connections 8 32] [--scenarios held tiny]

``--reference-src DIR`` compares instead: the same held-job polling measured against this checkout's
``src`` and another checkout's (``git worktree add /tmp/ref <commit>``, then ``--reference-src /tmp/ref/src``),
in alternating rounds so that both see the same machine load, and writes the ratio to
``bench/results/server-reference.md``.

    python bench/server.py --reference-src /tmp/ref/src [--rounds 3] [--duration 10] [--connections 8 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# tests/support is the one harness of the tests and the benchmarks (bench/scale.py imports it too). Only
# tests/ goes on the path, not src/: the servers and the --asgi-cpu runs started from here pick their
# img2vid checkout through PYTHONPATH (--reference-src).
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))

from support.images import png_bytes  # noqa: E402
from support.server_harness import free_port, wait_healthy  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "server.md"
REFERENCE_RESULTS = ROOT / "bench" / "results" / "server-reference.md"
SUBMIT = "/v2beta/image-to-video"


def held_job_engine():  # noqa: ANN201 - imported by the server process through IMG2VID_ENGINE_FACTORY
    """An engine whose job stays running (waiting, using no CPU) until the server stops."""
    from img2vid.engines.base import Engine, raise_if_cancelled
    from img2vid.fitting import PROTOCOL_SIZES

    class HeldJob(Engine):
        size_rule = PROTOCOL_SIZES

        def generate(self, request, progress=None, cancel=None):  # noqa: ANN001, ANN202
            if progress is not None:
                progress(0.5, "held")
            while True:
                raise_if_cancelled(cancel)
                time.sleep(0.05)

    return HeldJob()


class Server:
    def __init__(
        self, data: Path, args: list[str], env: dict[str, str], src: Path = ROOT / "src", start_timeout: float = 120.0
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), str(ROOT / "bench")]), **env}
        self.key = subprocess.run(
            [sys.executable, "-m", "img2vid", "keys", "create", "--name", "bench", "--data", str(data)],
            env=full_env, capture_output=True, text=True, check=True,
        ).stdout.strip()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "img2vid", "serve", "--port", str(self.port), "--data", str(data),
             "--rate-limit", "0", "--log-level", "warning", *args],
            env=full_env,
        )
        try:
            wait_healthy(self.url, self.process, timeout=start_timeout)
        except AssertionError as failure:
            self.stop()
            raise SystemExit(f"the server did not start: {failure}") from None

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


def _running_job(server: Server, client: httpx.Client, fields: dict[str, str], image: bytes) -> str:
    """Submit a job and wait until it reports progress (it is then running)."""
    job_id = client.post(SUBMIT, headers=server.headers(), data=fields,
                         files={"image": ("i.png", image, "image/png")}).json()["id"]
    deadline = time.monotonic() + 120
    while client.get(f"{SUBMIT}/result/{job_id}", headers=server.headers()).json().get("progress", 0) == 0:
        if time.monotonic() > deadline:
            raise SystemExit("the job did not start")
        time.sleep(0.2)
    return job_id


def scenario(name: str, args: list[str], env: dict[str, str], fields: dict[str, str], opts: argparse.Namespace,
             image: bytes) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        server = Server(Path(folder), args, env)
        try:
            with httpx.Client(base_url=server.url, timeout=60) as client:
                job_id = _running_job(server, client, fields, image)
                polls = {c: poll_load(server, job_id, c, opts.duration) for c in opts.connections}
                submits = submit_latency(server, opts.submits, image)
                still = client.get(f"{SUBMIT}/result/{job_id}", headers=server.headers())
                running = still.status_code == 202
        finally:
            server.stop()
    return {"name": name, "polls": polls, "submits": submits, "job_ran_throughout": running}


HELD = {"IMG2VID_ENGINE_FACTORY": "server:held_job_engine"}


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def held_polls(src: Path, opts: argparse.Namespace, image: bytes) -> dict[int, dict[str, float]]:
    """Polling figures of one server started from ``src`` with a held job, for each connection count, with
    the server's own CPU time per poll (which shared cores disturb far less than polls per second)."""
    with tempfile.TemporaryDirectory() as folder:
        server = Server(Path(folder), [], HELD, src=src)
        try:
            with httpx.Client(base_url=server.url, timeout=60) as client:
                job_id = _running_job(server, client, {}, image)
                figures = {}
                for connections in opts.connections:
                    cpu_before = _cpu_seconds(server.process.pid)
                    figures[connections] = poll_load(server, job_id, connections, opts.duration)
                    cpu = _cpu_seconds(server.process.pid) - cpu_before
                    figures[connections]["cpu_us"] = cpu * 1e6 / max(1.0, figures[connections]["requests"])
                return figures
        finally:
            server.stop()


def asgi_poll_cpu(polls: int) -> float:
    """CPU µs per poll of the app alone: ``polls`` result polls of a running job sent straight into the ASGI
    app in this process (no sockets, no load generator), timed with ``time.process_time``. Runs in a
    subprocess whose ``PYTHONPATH`` picks the checkout; a loaded machine slows it far less than it slows
    polls per second, because only this process's own CPU time is counted."""
    from fastapi.testclient import TestClient

    from img2vid.server import ServerSettings, create_app
    from img2vid.server.keys import create_key

    with tempfile.TemporaryDirectory() as folder:
        app = create_app(ServerSettings(data=Path(folder), rate_limit=0), engine=held_job_engine())
        with TestClient(app) as client:
            key, _ = create_key(app.state.img2vid.store, "bench")
            headers = {"authorization": f"Bearer {key}"}
            job_id = client.post(SUBMIT, headers=headers, files={"image": ("i.png", png_bytes(1024, 576), "image/png")}).json()["id"]
            while client.get(f"{SUBMIT}/result/{job_id}", headers=headers).json().get("progress", 0) == 0:
                time.sleep(0.05)
            path = f"{SUBMIT}/result/{job_id}"
            scope = {
                "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
                "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
                "headers": [(b"host", b"bench"), (b"authorization", headers["authorization"].encode())],
                "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80),
            }
            statuses: list[int] = []

            async def receive() -> dict:
                return {"type": "http.request", "body": b"", "more_body": False}

            async def send(message: dict) -> None:
                if message["type"] == "http.response.start":
                    statuses.append(message["status"])

            async def run(count: int) -> float:
                started = time.process_time()
                for _ in range(count):
                    await app(dict(scope), receive, send)
                return time.process_time() - started

            asyncio.run(run(polls // 10))  # warm up
            cpu = asyncio.run(run(polls))
            assert set(statuses) == {202}, set(statuses)
    return cpu * 1e6 / polls


def asgi_rounds(sources: dict[str, Path], opts: argparse.Namespace) -> dict[str, list[float]]:
    """:func:`asgi_poll_cpu` for each checkout, in alternating order, ``opts.asgi_rounds`` times each."""
    results: dict[str, list[float]] = {label: [] for label in sources}
    for number in range(opts.asgi_rounds):
        order = list(sources) if number % 2 == 0 else list(reversed(sources))
        for label in order:
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(sources[label]), str(ROOT / "bench")])}
            out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--asgi-cpu", str(opts.asgi_polls)],
                                 env=env, capture_output=True, text=True, check=True).stdout
            results[label].append(float(out.strip().splitlines()[-1]))
        print(f"asgi round {number + 1}: " + ", ".join(f"{label} {results[label][-1]:.0f} µs" for label in sources),
              flush=True)
    return results


def compare(opts: argparse.Namespace, image: bytes) -> None:
    """This checkout against ``--reference-src`` in alternating rounds (ABBA...), then the ratio of medians."""
    sources = {"this checkout": ROOT / "src", "reference": Path(opts.reference_src).resolve()}
    if not (sources["reference"] / "img2vid" / "__init__.py").is_file():
        raise SystemExit(f"--reference-src {opts.reference_src}: no img2vid package there (give a checkout's src folder)")
    load_before = os.getloadavg()
    asgi = asgi_rounds(sources, opts) if opts.asgi_rounds else {}
    rounds: list[dict[str, dict[int, dict[str, float]]]] = []
    for number in range(opts.rounds):
        order = list(sources) if number % 2 == 0 else list(reversed(sources))
        measured = {label: held_polls(sources[label], opts, image) for label in order}
        rounds.append(measured)
        print(f"round {number + 1}: " + ", ".join(
            f"{label} {c}c {measured[label][c]['rps']:.0f}/s {measured[label][c]['cpu_us']:.0f} µs CPU"
            for label in sources for c in opts.connections), flush=True)
    write_comparison(rounds, asgi, list(sources), opts, load_before)


def write_comparison(rounds: list[dict], asgi: dict[str, list[float]], labels: list[str], opts: argparse.Namespace,
                     load_before: tuple[float, float, float]) -> None:
    tool = rounds[0][labels[0]][opts.connections[0]]["tool"]
    lines = [
        "# Server polling: this checkout against a reference",
        "",
        f"`python bench/server.py --reference-src {opts.reference_src}` on {platform.node() or 'this machine'}: "
        f"{os.cpu_count()} CPU cores, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Load average before the run: {load_before[0]:.2f} "
        "(the cores are shared with other work).",
        "",
        "Both servers are `img2vid serve` (uvicorn, SQLite store, rate limit off) with a job held running by a "
        f"waiting engine; polls are `GET /v2beta/image-to-video/result/{{id}}` (202) with a valid key, "
        f"{opts.duration:g} s per figure, closed loop, {tool} on the same cores. The two are measured in "
        f"alternating rounds ({opts.rounds}; the first of each round swaps), so a change in machine load hits both.",
        "",
        "Two figures per server: polls per second (what a client sees, and what a loaded machine disturbs "
        "most), and the server process's CPU time per poll (user + system, from /proc), whose inverse is the "
        "polls per second one free core would serve.",
        "",
        "| round | connections | " + " | ".join(f"{label} polls/s" for label in labels) + " | ratio | "
        + " | ".join(f"{label} CPU µs/poll" for label in labels) + " | ratio |",
        "| ---: | ---: | " + " | ".join("---:" for _ in labels) + " | ---: | " + " | ".join("---:" for _ in labels) + " | ---: |",
    ]
    for number, measured in enumerate(rounds, 1):
        for c in opts.connections:
            rps = [measured[label][c]["rps"] for label in labels]
            cpu = [measured[label][c]["cpu_us"] for label in labels]
            lines.append(f"| {number} | {c} | " + " | ".join(f"{f:.0f}" for f in rps) + f" | {rps[0] / rps[1]:.2f} | "
                         + " | ".join(f"{f:.0f}" for f in cpu) + f" | {cpu[1] / cpu[0]:.2f} |")
    lines += ["", "Medians over the rounds (ratios: this checkout / reference in throughput, so above 1 is faster; "
              "the CPU ratio is reference CPU / this checkout's CPU, so also above 1 is faster):", "",
              "| connections | " + " | ".join(f"{label} polls/s" for label in labels)
              + " | throughput ratio | " + " | ".join(f"{label} CPU µs/poll" for label in labels)
              + " | CPU ratio | p99 ms | non-202 |",
              "| ---: | " + " | ".join("---:" for _ in labels) + " | ---: | "
              + " | ".join("---:" for _ in labels) + " | ---: | --- | ---: |"]
    for c in opts.connections:
        medians = [float(np.median([m[label][c]["rps"] for m in rounds])) for label in labels]
        cpu = [float(np.median([m[label][c]["cpu_us"] for m in rounds])) for label in labels]
        p99 = " / ".join(f"{np.median([m[label][c]['p99'] for m in rounds]):.1f}" for label in labels)
        errors = sum(m[label][c]["errors"] for m in rounds for label in labels)
        lines.append(f"| {c} | " + " | ".join(f"{m:.0f}" for m in medians) + f" | {medians[0] / medians[1]:.3f} | "
                     + " | ".join(f"{m:.0f}" for m in cpu) + f" | {cpu[1] / cpu[0]:.3f} | {p99} | {errors:.0f} |")
    spread = [
        (max(m[label][c]["rps"] for m in rounds) - min(m[label][c]["rps"] for m in rounds))
        / float(np.median([m[label][c]["rps"] for m in rounds]))
        for label in labels for c in opts.connections
    ]
    lines += ["", f"Round-to-round spread of one checkout's figure: up to {max(spread) * 100:.0f}% of its median.", ""]
    if asgi:
        medians = [float(np.median(asgi[label])) for label in labels]
        best = [min(asgi[label]) for label in labels]
        lines += [
            "## The app alone",
            "",
            f"{opts.asgi_polls} polls of a running job sent straight into the ASGI app in one process (no sockets, "
            "no load generator), CPU time of that process per poll; each figure a fresh process, the two checkouts "
            f"alternating, {opts.asgi_rounds} each. This is the cost the server's own code adds to a poll. The "
            "best run is the least disturbed one (timeit's rule), so its ratio is the steadier figure.",
            "",
            "| checkout | CPU µs per poll, each run | median | best |",
            "| --- | --- | ---: | ---: |",
            *[f"| {label} | {', '.join(f'{v:.0f}' for v in asgi[label])} | {m:.0f} | {b:.0f} |"
              for label, m, b in zip(labels, medians, best, strict=True)],
            "",
            f"Ratios (reference / this checkout; above 1 is faster): median {medians[1] / medians[0]:.3f}, "
            f"best {best[1] / best[0]:.3f}.",
            "",
        ]
    REFERENCE_RESULTS.parent.mkdir(parents=True, exist_ok=True)
    REFERENCE_RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of polling per measurement")
    parser.add_argument("--connections", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--submits", type=int, default=20)
    parser.add_argument("--scenarios", nargs="+", choices=["held", "tiny"], default=["held", "tiny"],
                        help="held: a job held running by a waiting engine; tiny: the tiny model computing")
    parser.add_argument("--reference-src", metavar="DIR",
                        help="compare held-job polling with the img2vid package in DIR (another checkout's src)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds with --reference-src")
    parser.add_argument("--asgi-rounds", type=int, default=6,
                        help="with --reference-src: runs of the in-process app measurement per checkout (0: none)")
    parser.add_argument("--asgi-polls", type=int, default=5000, help="polls per in-process run")
    parser.add_argument("--asgi-cpu", type=int, metavar="POLLS", help=argparse.SUPPRESS)  # one in-process run
    opts = parser.parse_args()
    if opts.asgi_cpu:
        print(f"{asgi_poll_cpu(opts.asgi_cpu):.2f}")
        return
    image = png_bytes(1024, 576)
    if opts.reference_src:
        compare(opts, image)
        return
    load_before = os.getloadavg()
    results = []
    if "held" in opts.scenarios:
        results.append(scenario("a job held running (engine waiting, no CPU)", [], HELD, {}, opts, image))
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
