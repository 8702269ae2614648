"""A short load test of ``prodcat serve`` on loopback, with the benchmark's own client: concurrent
text and photo requests for a few seconds each, no errors, bounded memory. (The full figures come
from ``benchmarks/serve_load.py``; this only guards against regressions such as a blocked event
loop or a leak of failed requests.)"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import sys
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def serve_load():
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("serve_load", BENCH / "serve_load.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["serve_load"] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("serve_load", None)
        sys.path.remove(str(BENCH))


@pytest.mark.slow
def test_load_text_and_photos_without_errors(serve_load, trained_bundle, tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (500, 500), (20, 180, 200)).save(buf, "JPEG", quality=90)
    with serve_load.Server(trained_bundle, log=tmp_path / "serve.log") as server:
        text = [serve_load.json_request(server.port, {"title": f"Carte pokémon holo {i}",
                                                      "description": "booster rare " * (i % 5)})
                for i in range(20)]
        photos = [serve_load.multipart_request(server.port, {"title": "Pompe piscine"}, buf.getvalue())]
        t = asyncio.run(serve_load.run_load(server.port, text, clients=8, duration=4.0))
        p = asyncio.run(serve_load.run_load(server.port, photos, clients=4, duration=3.0))
        rss = server.peak_rss_mb()
    ts, ps = t.summary(), p.summary()
    assert ts["errors"] == 0 and ps["errors"] == 0, (ts, ps, (tmp_path / "serve.log").read_text()[-2000:])
    # Far below the benchmark's figures: the machine is shared, this guards against collapse.
    assert ts["throughput_rps"] > 40 and ps["throughput_rps"] > 10, (ts, ps)
    assert ps["latency_ms"]["p99"] < 2000
    assert rss is not None and rss < 1024
