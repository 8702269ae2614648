"""Photos cannot starve the API, and the edges of serving: the decode budget, the decode gate under
a burst while text keeps flowing, slow and vanishing clients, keys, HEAD, offline docs, blank
titles and body encodings (issue 12, parts 2 and 3)."""

from __future__ import annotations

import asyncio
import base64
import codecs
import functools
import importlib.util
import io
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

pytest.importorskip("fastapi")
pytest.importorskip("multipart")
pytest.importorskip("uvicorn")

import httpx  # noqa: E402
import uvicorn  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from prodcat.errors import ConfigError  # noqa: E402
from prodcat.image import ImageError, load_image  # noqa: E402
from prodcat.image.loading import probe_image  # noqa: E402
from prodcat.serving import ModelService, ServingSettings, create_app, read_api_keys  # noqa: E402
from prodcat.serving.config import digest_key  # noqa: E402
from prodcat.serving.errors import ServingError  # noqa: E402
from prodcat.serving.images import DecodeGate, check_image  # noqa: E402
from prodcat.serving.server import _uvicorn_http  # noqa: E402
from prodcat.text.cleaning import is_blank  # noqa: E402

KEY = "k" * 24
BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@functools.cache
def _serve_burst():
    """``benchmarks/serve_burst.py``, for the photos it makes (the issue's 140 KB PNG)."""
    spec = importlib.util.spec_from_file_location("serve_burst", BENCH / "serve_burst.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def blank_png(width: int, height: int) -> bytes:
    """A real, decodable, all-zero RGBA PNG: 6000×6000 is about 140 KB for 144 M samples."""
    return _serve_burst().blank_png(width, height)


def drawn_png(size: tuple[int, int]) -> bytes:
    return _serve_burst().drawn_png(*size)


def jpeg(size: tuple[int, int], colour=(200, 40, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "JPEG", quality=85)
    return buf.getvalue()


@pytest.fixture(scope="module")
def service(trained_bundle) -> ModelService:
    return ModelService.load(trained_bundle)


@pytest.fixture(scope="module")
def big_png() -> bytes:
    return blank_png(6000, 6000)


def make_client(service: ModelService, **settings) -> TestClient:
    s = ServingSettings(model_dir=str(service.model_dir), **settings)
    return TestClient(create_app(s, service=service), raise_server_exceptions=False)


def error_of(resp, status: int, code: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    if code is not None:
        assert err["code"] == code, err
    return err


class LiveServer:
    """The app under uvicorn in a thread, on a free loopback port (for what a TestClient cannot
    show: sockets that stall or vanish)."""

    def __init__(self, service: ModelService, **settings):
        self.settings = ServingSettings(model_dir=str(service.model_dir), **settings)
        self.app = create_app(self.settings, service=service)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="info", lifespan="on",
                                http=_uvicorn_http(self.settings), timeout_keep_alive=5)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the server did not start"
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(15)

    def metric(self, name: str, **labels) -> float:
        value = self.app.state.metrics.registry.get_sample_value(name, labels)
        return value or 0.0


# --- loading: decode once, at the size needed, within a budget ----------------------------------


def test_decode_budget_counts_pixels_times_bands_before_decoding(big_png):
    assert len(big_png) < 200_000
    probe = probe_image(big_png)
    assert (probe.width, probe.height, probe.mode, probe.samples) == (6000, 6000, "RGBA", 144_000_000)
    with pytest.raises(ImageError, match="decode budget") as err:
        load_image(big_png, max_samples=36_000_000)
    assert err.value.kind == "too large"
    # A JPEG of the same size is decoded from its DCT coefficients at 1/8: within the budget.
    big_jpeg = jpeg((6000, 6000))
    assert probe_image(big_jpeg, target_size=448).samples == 750 * 750 * 3
    assert max(load_image(big_jpeg, max_samples=36_000_000, target_size=448).size) == 750


def test_large_palette_and_16_bit_pngs_are_reduced_as_colours():
    pal = Image.new("P", (2000, 1000))
    pal.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    ImageDraw.Draw(pal).rectangle([0, 0, 999, 999], fill=1)
    buf = io.BytesIO()
    pal.save(buf, "PNG")
    # Image.reduce refuses palette images: these were "corrupt" before.
    loaded = load_image(buf.getvalue(), target_size=400)
    assert loaded.mode == "RGB" and 400 <= max(loaded.size) < 800
    assert loaded.getpixel((10, 10)) == (200, 30, 30) and loaded.getpixel((loaded.width - 5, 10)) == (0, 0, 0)
    grey16 = Image.fromarray(np.full((1200, 1600), 40_000, dtype=np.uint16))
    buf = io.BytesIO()
    grey16.save(buf, "PNG")
    loaded = load_image(buf.getvalue(), target_size=400)
    assert loaded.mode == "RGB" and 400 <= max(loaded.size) < 800 and loaded.getpixel((0, 0))[0] > 100


def test_check_image_decodes_once_at_the_target_size():
    checked = check_image(drawn_png((3000, 2000)), max_bytes=10_000_000, max_pixels=40_000_000,
                          target_size=448)
    assert (checked.format, checked.width, checked.height) == ("PNG", 3000, 2000)
    with Image.open(io.BytesIO(checked.data)) as stored:
        # What the encoder decodes to anyway (long side >= 448, less than twice that).
        assert stored.mode == "RGB" and 448 <= max(stored.size) < 896


# --- the API: refusals from the header, the decode gate, batches -------------------------------


def test_decode_budget_refusals_are_413_naming_the_limit(service, big_png):
    with make_client(service) as c:
        err = error_of(c.post("/v1/predict", data={"title": "tapis"},
                              files={"image": ("p.png", big_png, "image/png")}), 413, "image_too_large")
        assert "decode budget" in err["message"] and "36,000,000" in err["message"]
        assert "144,000,000" in err["message"]
        b64 = base64.b64encode(big_png).decode()
        err = error_of(c.post("/v1/predict/batch", json={"items": [{"title": "a", "image": b64}]}),
                       413, "image_too_large")
        assert err["message"].startswith("items.0.image")
        assert c.get("/v1/model").json()["limits"]["max_decode_samples"] == 36_000_000
        assert c.app.state.prodcat.decodes.running == 0


def test_batch_photo_totals_are_bounded(service):
    photo = drawn_png((1500, 1000))  # 4.5 M samples each
    b64 = base64.b64encode(photo).decode()
    items = [{"title": f"lampe {i}", "image": b64} for i in range(4)]
    with make_client(service, max_batch_decode_samples=10_000_000) as c:
        err = error_of(c.post("/v1/predict/batch", json={"items": items}), 413, "photos_too_large")
        assert "max_batch_decode_samples" in err["message"] and "18,000,000" in err["message"]
        assert c.post("/v1/predict/batch", json={"items": items[:2]}).status_code == 200
    with make_client(service, max_batch_image_bytes=len(photo) * 3) as c:
        err = error_of(c.post("/v1/predict/batch", json={"items": items}), 413, "photos_too_large")
        assert "max_batch_image_bytes" in err["message"]


def test_decode_gate_refuses_past_its_queue_with_retry_after():
    async def scenario():
        gate = DecodeGate(slots=1, queue=1, retry_after=2)
        release = asyncio.Event()

        async def hold():
            async with gate.slot():
                await release.wait()

        first = asyncio.create_task(hold())
        await asyncio.sleep(0)
        second = asyncio.create_task(hold())  # waits for the slot
        await asyncio.sleep(0)
        assert (gate.running, gate.waiting) == (1, 1)
        with pytest.raises(ServingError) as err:
            async with gate.slot():
                pass
        release.set()
        await asyncio.gather(first, second)
        assert (gate.running, gate.waiting) == (0, 0)
        return err.value

    err = asyncio.run(scenario())
    assert err.status == 503 and err.code == "busy" and err.headers == {"Retry-After": "2"}


def _http(sock: socket.socket, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send one request on ``sock`` and read its response (Content-Length bodies only)."""
    sock.sendall(raw)
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        buf += data
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    length = int(headers.get("content-length", 0))
    while len(body) < length:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        body += data
    return int(lines[0].split()[1]), headers, body


def _multipart(title: str, photo: bytes) -> bytes:
    body = (b"--XX\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\n" + title.encode() + b"\r\n"
            b"--XX\r\nContent-Disposition: form-data; name=\"image\"; filename=\"p.png\"\r\n"
            b"Content-Type: image/png\r\n\r\n" + photo + b"\r\n--XX--\r\n")
    return (b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=XX\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


@pytest.mark.slow
def test_a_burst_of_large_pngs_gets_503s_while_text_keeps_flowing(trained_bundle, tmp_path):
    """``prodcat serve`` in its own process (clients here must not share its interpreter), one
    decode at a time and two waiting: a burst of 12 of the largest PNGs the budget accepts."""
    import os
    import subprocess
    import sys

    photo = drawn_png((4000, 3000))  # 36 M samples: the most one decode may hold
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "prodcat.cli", "serve", "--model", str(trained_bundle),
                             "--port", str(port), "--decode-concurrency", "1", "--log-level", "warning"],
                            stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PRODCAT_API_KEYS": "", "PRODCAT_API_KEY_FILE": ""})
    latencies: list[float] = []
    statuses: list[int] = []
    retry_after: set[str] = set()
    text_failures: list[int] = []
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                    if _http(sock, b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 200:
                        break
            except OSError:
                time.sleep(0.2)
        stop = threading.Event()
        title = "Carte pokémon holo rare".encode()
        text_request = (b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"Content-Length: " + str(len(title) + 13).encode() + b"\r\n\r\n{\"title\": \""
                        + title + b"\"}")

        def text_client():
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                while not stop.is_set():
                    t0 = time.perf_counter()
                    status, _, _ = _http(sock, text_request)
                    latencies.append(time.perf_counter() - t0)
                    if status != 200:
                        text_failures.append(status)

        def upload(i: int) -> None:
            with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
                status, headers, body = _http(sock, _multipart(f"tapis {i}", photo))
            statuses.append(status)
            if status == 503:
                assert b'"busy"' in body
                retry_after.add(headers["retry-after"])

        text = threading.Thread(target=text_client)
        text.start()
        time.sleep(0.5)
        with ThreadPoolExecutor(12) as pool:
            list(pool.map(upload, range(12)))
        time.sleep(0.5)
        stop.set()
        text.join(30)
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
    assert set(statuses) <= {200, 503} and statuses.count(200) >= 1 and statuses.count(503) >= 1, statuses
    assert retry_after == {"1"} and not text_failures
    assert len(latencies) >= 10
    p99 = float(np.percentile(latencies, 99))
    assert p99 < 1.0, f"text p99 {p99:.3f} s during the burst ({len(latencies)} requests: {[round(x, 2) for x in latencies]})"


# --- slow and vanishing clients -----------------------------------------------------------------


def _recv_all(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    chunks = []
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    except (TimeoutError, ConnectionResetError):
        pass
    return b"".join(chunks)


def test_client_disconnecting_mid_body_is_one_info_line(service, caplog):
    caplog.set_level(logging.INFO)
    photo = drawn_png((800, 600))
    with LiveServer(service) as live:
        with socket.create_connection(("127.0.0.1", live.port)) as sock:
            head = (f"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                    f"boundary=XX\r\nContent-Length: {len(photo) + 500}\r\n\r\n")
            sock.sendall(head.encode() + b"--XX\r\nContent-Disposition: form-data; name=\"image\"; "
                         b"filename=\"p.png\"\r\nContent-Type: image/png\r\n\r\n" + photo[:5000])
            time.sleep(0.3)
        with socket.create_connection(("127.0.0.1", live.port)) as sock:
            sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 1000\r\n\r\n{\"title\": \"lam")
            time.sleep(0.3)
        deadline = time.monotonic() + 5
        while live.metric("prodcat_errors_total", code="client_disconnected") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        gone = live.metric("prodcat_errors_total", code="client_disconnected")
        internal = live.metric("prodcat_errors_total", code="internal_error")
    assert gone == 2 and internal == 0
    lines = [r for r in caplog.records if "disconnected" in r.getMessage()]
    assert len(lines) == 2 and all(r.levelno == logging.INFO and not r.exc_info for r in lines)
    assert not any(r.exc_info for r in caplog.records), [r.getMessage() for r in caplog.records if r.exc_info]


def test_slow_headers_and_bodies_are_cut_off(service):
    with LiveServer(service, header_timeout=0.5, body_timeout=0.5) as live:
        with socket.create_connection(("127.0.0.1", live.port)) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finishes its headers
            t0 = time.monotonic()
            assert _recv_all(sock, 5) == b""  # closed by the server
            assert time.monotonic() - t0 < 3
        with socket.create_connection(("127.0.0.1", live.port)) as sock:
            sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100\r\n\r\n{\"title\"")  # the rest never comes
            reply = _recv_all(sock, 5)
        assert reply.startswith(b"HTTP/1.1 408") and b"request_timeout" in reply
        # A client that keeps up is not affected, on a kept-alive connection too.
        with httpx.Client(base_url=live.url) as c:
            for _ in range(2):
                assert c.post("/v1/predict", json={"title": "lampe"}).status_code == 200
                time.sleep(0.2)


# --- keys, ops endpoints, HEAD, docs ------------------------------------------------------------


def test_api_keys_that_cannot_work_are_refused_at_start_up(tmp_path):
    for raw in (",", " , ,"):
        with pytest.raises(ConfigError, match="holds no key"):
            read_api_keys(environ={"PRODCAT_API_KEYS": raw})
    assert read_api_keys(environ={"PRODCAT_API_KEYS": ""}) == ()  # set but empty: not set
    with pytest.raises(ConfigError, match="ASCII"):
        read_api_keys(environ={"PRODCAT_API_KEYS": "clé-secrète-très-longue-1234"})
    f = tmp_path / "keys"
    f.write_text(f"{KEY}\nclef-\u00e0-accent-tr\u00e8s-longue-1234\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="ASCII"):
        read_api_keys(f, environ={})
    f.write_bytes(b"\xff\xfe not utf-8 at all")
    with pytest.raises(ConfigError, match="UTF-8"):
        read_api_keys(f, environ={})
    with pytest.raises(ConfigError, match="needs API keys"):
        ServingSettings(model_dir="/m", protect_ops=True)


def test_protected_ops_need_the_key_but_health_checks_do_not(service):
    with make_client(service, api_key_digests=(digest_key(KEY),), protect_ops=True) as c:
        for path in ("/metrics", "/docs", "/openapi.json"):
            error_of(c.get(path), 401, "unauthorized")
            assert c.get(path, headers={"X-API-Key": KEY}).status_code == 200, path
        assert c.get("/healthz").status_code == 200 and c.head("/readyz").status_code == 200
    with make_client(service, api_key_digests=(digest_key(KEY),)) as c:  # open by default
        assert c.get("/metrics").status_code == 200 and c.get("/docs").status_code == 200


def test_head_on_health_endpoints(service):
    with make_client(service) as c:
        for path in ("/healthz", "/readyz"):
            r = c.head(path)
            assert r.status_code == 200 and r.content == b""
        assert "head" not in c.get("/openapi.json").json()["paths"]["/healthz"]


def test_docs_work_offline(service):
    with make_client(service) as c:
        page = c.get("/docs")
        assert page.status_code == 200
        html = page.text
        assert "/docs/assets/swagger-ui-bundle.js" in html and "/docs/assets/swagger-ui.css" in html
        assert "cdn" not in html.lower() and "https://" not in html.replace("https://fastapi.tiangolo.com", "")
        js = c.get("/docs/assets/swagger-ui-bundle.js")
        assert js.status_code == 200 and len(js.content) > 500_000
        assert c.get("/docs/assets/swagger-ui.css").status_code == 200
        assert c.get("/redoc").status_code == 404  # it would need a CDN


def test_serving_on_a_public_address_without_keys_warns(monkeypatch, capsys, trained_bundle):
    from prodcat.cli import main
    from prodcat.serving import server

    monkeypatch.setattr(server, "run_server", lambda *a, **k: None)
    monkeypatch.setattr(ModelService, "load", classmethod(lambda cls, d: None))
    monkeypatch.delenv("PRODCAT_API_KEYS", raising=False)
    monkeypatch.delenv("PRODCAT_API_KEY_FILE", raising=False)
    assert main(["serve", "--model", str(trained_bundle), "--host", "0.0.0.0"]) == 0
    assert "warning: serving on 0.0.0.0 without API keys" in capsys.readouterr().err
    for host in ("127.0.0.1", "localhost", "::1"):
        assert main(["serve", "--model", str(trained_bundle), "--host", host]) == 0
        assert "warning" not in capsys.readouterr().err
    monkeypatch.setenv("PRODCAT_API_KEYS", KEY)
    assert main(["serve", "--model", str(trained_bundle), "--host", "0.0.0.0"]) == 0
    assert "warning" not in capsys.readouterr().err
    monkeypatch.setenv("PRODCAT_API_KEYS", ",")
    assert main(["serve", "--model", str(trained_bundle)]) == 2
    assert "holds no key" in capsys.readouterr().err


# --- blank titles and body encodings ------------------------------------------------------------


@pytest.mark.parametrize("title", ["\u200b\u200b", " \ufeff\u00ad ", "\u2060\u200d\t", "\x00"])
def test_titles_of_invisible_characters_are_blank(service, title):
    assert is_blank(title)
    with make_client(service) as c:
        error_of(c.post("/v1/predict", json={"title": title}), 422, "title_required")
        error_of(c.post("/v1/predict", data={"title": title}), 422, "title_required")
        error_of(c.post("/v1/predict/batch", json={"items": [{"title": title}]}), 422, "title_required")
        assert c.post("/v1/predict", json={"title": title + "lampe"}).status_code == 200


def test_single_and_batch_endpoints_accept_the_same_encodings(service):
    single = '{"title": "Lampe de chevet éclairage"}'
    batch = '{"items": [{"title": "Lampe de chevet éclairage"}]}'
    bodies = [
        ("application/json", lambda t: t.encode()),
        ("application/json", lambda t: codecs.BOM_UTF8 + t.encode()),
        ("application/json", lambda t: t.encode("utf-16")),  # with its BOM
        ("application/json; charset=utf-16le", lambda t: t.encode("utf-16-le")),
        ("application/json; charset=UTF-32", lambda t: t.encode("utf-32")),
    ]
    with make_client(service) as c:
        for ctype, encode in bodies:
            r1 = c.post("/v1/predict", content=encode(single), headers={"Content-Type": ctype})
            r2 = c.post("/v1/predict/batch", content=encode(batch), headers={"Content-Type": ctype})
            assert (r1.status_code, r2.status_code) == (200, 200), (ctype, r1.text, r2.text)
            assert r1.json()["top_k"] == r2.json()["results"][0]["top_k"]
        for body in (b'{"title": "\\ud800 lampe"}', b'{"title": "caf\xe9"}'):
            batch_body = b'{"items": [' + body + b"]}"
            s1 = c.post("/v1/predict", content=body, headers={"Content-Type": "application/json"})
            s2 = c.post("/v1/predict/batch", content=batch_body, headers={"Content-Type": "application/json"})
            assert (s1.status_code, s2.status_code) == (422, 422), (body, s1.text, s2.text)
        r = c.post("/v1/predict", content=single.encode("latin-1", "replace"),
                   headers={"Content-Type": "application/json; charset=latin-1"})
        error_of(r, 415, "unsupported_media_type")
