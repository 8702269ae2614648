"""Load test of the REST API (``prodcat serve``) on loopback: throughput, latency, errors, memory.

For each data set (the demo catalogue and, when ``../shared/data/rakuten`` is present, the real
listings) the script trains a text-only bundle (``prodcat train``) and, when the Classifier has an
image modality and onnxruntime is installed, a text+image bundle; starts ``prodcat serve`` for
each on 127.0.0.1 as a separate process; and runs concurrent keep-alive clients against
``POST /v1/predict`` for ``--duration`` seconds per scenario:

* ``text``: JSON bodies with the title and description of the data set's listings
  (``--clients`` connections);
* ``image``: multipart forms with the same text plus the listing's photo (``--image-clients``).

Latency is the client's, from sending the request to reading the whole response. Server memory
is its VmHWM (peak resident set) from ``/proc``. Every loop stops by itself at its deadline;
traffic goes to 127.0.0.1 only. Listings and photos are read from the data set at run time.

Targets on 2 cores, for the text+image model: >= 300 requests/s text-only; >= 30 requests/s with
photos at p99 < 400 ms; zero errors; server memory < 1 GB.

    python benchmarks/serve_load.py --duration 30 --save
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402  (the benchmarks folder is not a package)
    NOISE_NOTE,
    base_parser,
    machine_info,
    machine_line,
    markdown_table,
    parse_int_list,
    percentiles_ms,
    save_results,
)

REPO = Path(__file__).resolve().parent.parent
TARGETS = {"text_rps": 300.0, "image_rps": 30.0, "image_p99_ms": 400.0, "memory_mb": 1024.0}
LOOPBACK = "127.0.0.1"


# --- the server ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def prodcat_bin() -> list[str]:
    exe = Path(sys.executable).with_name("prodcat")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "prodcat.cli"]


def train_bundle(data: Path, out: Path, fmt: str = "auto") -> Path:
    """A text-only bundle trained on ``data`` by today's code (no cross-validation: only its
    speed matters here; ``prodcat train``'s fit cache makes a second run quick). Text only even
    when the data has photos, which ``prodcat train`` would otherwise use."""
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run([*prodcat_bin(), "train", "--data", str(data), "--format", fmt, "--out", str(out),
                    "--cv", "0", "--image-encoder", "none"], check=True, stdout=subprocess.DEVNULL)
    return out


def image_modality_available() -> str | None:
    """None when a text+image Classifier can be trained here, else why not."""
    import importlib.util
    import inspect

    from prodcat.model import Classifier

    if "image" not in inspect.signature(Classifier).parameters:
        return "the Classifier has no image modality yet"
    if importlib.util.find_spec("onnxruntime") is None:
        return "onnxruntime is not installed (extra 'image')"
    return None


def train_fused_bundle(data: Path, out: Path) -> Path:
    """A text+image bundle trained by today's code (the image encoder's ONNX export must be
    cached or exportable)."""
    shutil.rmtree(out, ignore_errors=True)
    import warnings

    from prodcat.data import read_catalog
    from prodcat.image import ImageClassifier
    from prodcat.model import Classifier

    catalog = read_catalog(data).labelled()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = Classifier(image=ImageClassifier()).fit(catalog.X, catalog.y, taxonomy=catalog.taxonomy)
    if getattr(model, "image_", None) is None:
        raise RuntimeError(f"the image model was left out when training on {data} (too few photos)")
    return model.save(out, training={"source": str(data), "n_listings": len(catalog)})


class Server:
    """``prodcat serve`` in a child process on loopback; always stopped on exit."""

    def __init__(self, model: Path, *, workers: int = 1, log: Path | None = None):
        self.port = free_port()
        self.model = model
        self.workers = workers
        self.log = log
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Server:
        out = open(self.log, "wb") if self.log else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [*prodcat_bin(), "serve", "--model", str(self.model), "--host", LOOPBACK,
             "--port", str(self.port), "--workers", str(self.workers), "--log-level", "warning"],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PRODCAT_API_KEYS": ""})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prodcat serve exited with {self.proc.returncode}"
                                   + (f"; see {self.log}" if self.log else ""))
            try:
                status, _ = asyncio.run(_one_request(self.port, b"GET /readyz HTTP/1.1\r\nHost: x\r\n"
                                                                b"Connection: close\r\n\r\n"))
                if status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("prodcat serve was not ready within 60 s")

    def peak_rss_mb(self) -> float | None:
        """Peak resident memory of the server (its children too, with several workers)."""
        if self.proc is None:
            return None
        total = 0.0
        for pid in [self.proc.pid, *_children(self.proc.pid)]:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1]) / 1024
            except OSError:
                continue
        return round(total, 1) or None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


# --- the client: raw HTTP/1.1 over asyncio streams (light enough to leave the CPU to the server)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    body = await reader.readexactly(length) if length else b""
    return status, body


async def _one_request(port: int, raw: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    try:
        writer.write(raw)
        await writer.drain()
        return await _read_response(reader)
    finally:
        writer.close()


def json_request(port: int, payload: dict[str, Any]) -> bytes:
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    return (f"POST /v1/predict HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


def multipart_request(port: int, fields: dict[str, str], image: bytes) -> bytes:
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n".encode()
                     + value.encode("utf-8") + b"\r\n")
    parts.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
                 f"filename=\"photo.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n".encode() + image + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return (f"POST /v1/predict HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    server_latency_ms: list[float] = field(default_factory=list)

    def add_error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def summary(self) -> dict[str, Any]:
        n = len(self.latencies)
        return {"requests": n, "errors": sum(self.errors.values()), "error_kinds": self.errors,
                "seconds": round(self.seconds, 2),
                "throughput_rps": round(n / self.seconds, 1) if self.seconds else 0.0,
                "latency_ms": percentiles_ms(self.latencies, (50, 90, 99)) if n else {},
                "max_ms": round(max(self.latencies) * 1000, 1) if n else None}


async def run_load(port: int, requests: list[bytes], *, clients: int, duration: float,
                   max_requests: int = 1_000_000, timeout: float = 10.0) -> LoadResult:
    """``clients`` keep-alive connections, each sending the next request as soon as the previous
    answer is read, until ``duration`` seconds have passed or ``max_requests`` were sent."""
    result = LoadResult()
    sent = 0
    deadline = time.perf_counter() + duration

    async def client(i: int) -> None:
        nonlocal sent
        rng = random.Random(i)
        reader = writer = None
        while time.perf_counter() < deadline and sent < max_requests:
            sent += 1
            raw = requests[rng.randrange(len(requests))]
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(LOOPBACK, port)
                t0 = time.perf_counter()
                writer.write(raw)
                await writer.drain()
                status, body = await asyncio.wait_for(_read_response(reader), timeout)
                elapsed = time.perf_counter() - t0
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as exc:
                result.add_error(type(exc).__name__)
                if writer is not None:
                    writer.close()
                reader = writer = None
                continue
            if status != 200:
                result.add_error(f"HTTP {status}")
                continue
            result.latencies.append(elapsed)
            if i == 0:  # a sample of the server's own view, from one client
                result.server_latency_ms.append(json.loads(body).get("latency_ms", 0.0))
        if writer is not None:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    result.seconds = time.perf_counter() - t0
    return result


# --- payloads from a data set -------------------------------------------------------------------


def payloads(data: Path, port: int, n: int = 400, seed: int = 0) -> tuple[list[bytes], list[bytes]]:
    """Text-only and with-photo requests built from the listings of ``data`` (read at run time)."""
    from prodcat.data import read_catalog

    frame = read_catalog(data).frame
    rng = random.Random(seed)
    rows = frame.sample(n=min(n, len(frame)), random_state=seed)
    text = [json_request(port, {"title": str(r.title) or "article", "description": str(r.description or "")[:2000]})
            for r in rows.itertuples()]
    with_photo = frame[frame["image"].notna()]
    photos = with_photo.sample(n=min(n, len(with_photo)), random_state=seed) if len(with_photo) else with_photo
    image = []
    for r in photos.itertuples():
        try:
            data_bytes = Path(r.image).read_bytes()
        except OSError:
            continue
        image.append(multipart_request(port, {"title": str(r.title) or "article",
                                              "description": str(r.description or "")[:2000]}, data_bytes))
    rng.shuffle(image)
    return text, image


# --- main ---------------------------------------------------------------------------------------


def bench_server(label: str, model: Path, scenarios: list[tuple[str, list[bytes] | None, int]], args,
                 log: Path, sweep: list[int] | None = None) -> dict[str, Any]:
    """One server for ``model``; each scenario is (name, requests or None to build, clients)."""
    out: dict[str, Any] = {"model": label, "bundle": str(model), "scenarios": {}}
    with Server(model, workers=args.workers, log=log) as server:
        text, image = payloads(args.current_data, server.port)
        for scenario, _, clients in scenarios:
            reqs = text if scenario == "text" else image
            if not reqs:
                continue
            # A short warm-up (connections, allocator, caches) that is not counted.
            asyncio.run(run_load(server.port, reqs, clients=min(4, clients), duration=1.0))
            res = asyncio.run(run_load(server.port, reqs, clients=clients, duration=args.duration))
            summary = res.summary()
            summary["clients"] = clients
            if res.server_latency_ms:
                summary["server_latency_ms_p50"] = percentiles_ms(
                    [x / 1000 for x in res.server_latency_ms], (50,))["p50"]
            out["scenarios"][scenario] = summary
            lat = summary["latency_ms"]
            print(f"{args.current_name:>8} {label:>10} {scenario:>5} x{clients:<3}: "
                  f"{summary['throughput_rps']:7.1f} req/s  p50 {lat.get('p50', 0):6.1f} ms  "
                  f"p99 {lat.get('p99', 0):6.1f} ms  errors {summary['errors']}", file=sys.stderr)
        # Throughput grows with concurrency (bigger micro-batches): text requests at other counts.
        out["text_sweep"] = []
        for clients in sweep or []:
            res = asyncio.run(run_load(server.port, text, clients=clients, duration=args.sweep_duration))
            summary = {**res.summary(), "clients": clients}
            out["text_sweep"].append(summary)
            print(f"{args.current_name:>8} {label:>10}  text x{clients:<3}: {summary['throughput_rps']:7.1f} "
                  f"req/s  p99 {summary['latency_ms'].get('p99', 0):6.1f} ms", file=sys.stderr)
        out["server_peak_rss_mb"] = server.peak_rss_mb()
    return out


def verdicts(runs: list[dict[str, Any]]) -> dict[str, bool | None]:
    """Targets, judged on the text+image model when there is one (else on the text model)."""
    by_model = {r["model"]: r for r in runs}
    main = by_model.get("text+image") or by_model.get("text") or {"scenarios": {}}
    text = main["scenarios"].get("text", {})
    image = by_model.get("text+image", {}).get("scenarios", {}).get("image", {})
    mems = [r.get("server_peak_rss_mb") for r in runs if r.get("server_peak_rss_mb")]
    return {
        "text_rps": text.get("throughput_rps", 0) >= TARGETS["text_rps"] if text else None,
        "image_rps": image.get("throughput_rps", 0) >= TARGETS["image_rps"] if image else None,
        "image_p99": (image.get("latency_ms", {}).get("p99", 1e9) < TARGETS["image_p99_ms"]) if image else None,
        "zero_errors": all(s.get("errors", 1) == 0 for r in runs
                           for s in [*r["scenarios"].values(), *r.get("text_sweep", [])]),
        "memory": max(mems) < TARGETS["memory_mb"] if mems else None,
    }


def markdown(payload: dict[str, Any]) -> str:
    rows = []
    for ds in payload["data_sets"]:
        for run in ds["runs"]:
            for scenario, s in run["scenarios"].items():
                lat = s.get("latency_ms", {})
                rows.append([ds["data_set"], run["model"], scenario, s["clients"], s["requests"],
                             s["throughput_rps"], lat.get("p50"), lat.get("p90"), lat.get("p99"), s["errors"],
                             run.get("server_peak_rss_mb")])
    table = markdown_table(["data set", "model", "requests", "clients", "n", "req/s", "p50 ms", "p90 ms",
                            "p99 ms", "errors", "server peak MB"], rows, digits=1)
    sweep_rows = [[ds["data_set"], run["model"], s["clients"], s["throughput_rps"],
                   s.get("latency_ms", {}).get("p50"), s.get("latency_ms", {}).get("p99"), s["errors"]]
                  for ds in payload["data_sets"] for run in ds["runs"] for s in run.get("text_sweep", [])]
    sweep = ""
    if sweep_rows:
        sweep = ("\n\nText requests at other concurrencies (same server, "
                 f"{payload['sweep_duration_s']:g} s each):\n\n"
                 + markdown_table(["data set", "model", "clients", "req/s", "p50 ms", "p99 ms", "errors"],
                                  sweep_rows, digits=1))
    checks = []
    for ds in payload["data_sets"]:
        v = ds["verdicts"]
        checks.append(f"- {ds['data_set']}: text-only ≥ {TARGETS['text_rps']:.0f} req/s {_pf(v['text_rps'])}; "
                      f"with images ≥ {TARGETS['image_rps']:.0f} req/s {_pf(v['image_rps'])} at p99 < "
                      f"{TARGETS['image_p99_ms']:.0f} ms {_pf(v['image_p99'])}; zero errors "
                      f"{_pf(v['zero_errors'])}; server memory < 1 GB {_pf(v['memory'])}")
    notes = "\n".join(f"- {n}" for n in payload["notes"])
    return (f"## API load test (`prodcat serve`, loopback)\n\n"
            f"Closed-loop keep-alive clients for {payload['duration_s']:g} s per row, "
            f"{payload['workers']} uvicorn worker(s); client and server share the machine's cores. "
            f"`text` rows send title + description as JSON, `image` rows a multipart form with the "
            f"listing's photo. Latency is the client's (send to last byte).\n\n"
            f"{table}{sweep}\n\n{chr(10).join(checks)}\n\n{notes}\n\n{machine_line(payload['machine'])}\n\n"
            f"{NOISE_NOTE}\n")


def _pf(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.split("\n")[0], data=True, out=True, save=True)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per scenario (at most 30)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent connections, text requests")
    parser.add_argument("--image-clients", type=int, default=8,
                        help="concurrent connections, requests with a photo")
    parser.add_argument("--sweep", type=parse_int_list, default=[16, 64],
                        help="other client counts for text requests to the main model, --sweep-duration each")
    parser.add_argument("--sweep-duration", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--no-real", action="store_true", help="only the demo catalogue")
    args = parser.parse_args(argv)
    args.duration = min(max(args.duration, 1.0), 30.0)
    args.sweep_duration = min(max(args.sweep_duration, 1.0), 30.0)
    work = args.out / "serve_load"
    work.mkdir(parents=True, exist_ok=True)

    from prodcat.demo import write_demo_catalog

    sets = [("demo", write_demo_catalog(work / "demo-data", n_listings=480))]
    data_path = Path(args.data)
    notes: list[str] = []
    if not args.no_real:
        if data_path.exists():
            sets.append((data_path.name, data_path))
        else:
            notes.append(f"{data_path} is absent: the real-data models were skipped.")
    no_image = image_modality_available()
    if no_image:
        notes.append(f"No text+image model: {no_image}. Image rows then go to the text-only model "
                     "(upload and validation only, no image encoder).")
    results = []
    for name, data in sets:
        args.current_name, args.current_data = name, data
        runs = []
        text_model = train_bundle(data, work / f"model-{name}-text")
        runs.append(bench_server("text", text_model, [("text", None, args.clients)] +
                                 ([("image", None, args.image_clients)] if no_image else []),
                                 args, work / f"serve-{name}-text.log", sweep=args.sweep if no_image else None))
        if not no_image:
            print(f"training the text+image model on {name} ...", file=sys.stderr)
            fused = train_fused_bundle(data, work / f"model-{name}-fused")
            runs.append(bench_server("text+image", fused, [("text", None, args.clients),
                                                           ("image", None, args.image_clients)],
                                     args, work / f"serve-{name}-fused.log", sweep=args.sweep))
        results.append({"data_set": name, "runs": runs, "verdicts": verdicts(runs)})
    payload = {"benchmark": "serve_load", "duration_s": args.duration, "clients": args.clients,
               "image_clients": args.image_clients, "sweep_duration_s": args.sweep_duration, "workers": args.workers, "targets": TARGETS,
               "data_sets": results, "notes": notes, "machine": machine_info()}
    print(json.dumps({d["data_set"]: d["verdicts"] for d in results}))
    if args.save:
        for p in save_results("serve_load", payload, markdown(payload)):
            print(f"wrote {p}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
