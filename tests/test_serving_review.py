"""The review queue through the API: answers queued, feedback, claiming and deciding."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("sqlalchemy")

from fastapi.testclient import TestClient  # noqa: E402

from prodcat.review import ReviewStore  # noqa: E402
from prodcat.serving import ModelService, ServingSettings, create_app  # noqa: E402
from prodcat.serving.review_routes import answer_reason  # noqa: E402


def jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (20, 180, 200)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def service(trained_bundle) -> ModelService:
    return ModelService.load(trained_bundle)


@pytest.fixture
def db(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'reviews.db'}"


@pytest.fixture
def client(service, db):
    s = ServingSettings(model_dir=str(service.model_dir), review_db=db)
    with TestClient(create_app(s, service=service), raise_server_exceptions=False) as c:
        yield c


def test_unsure_answers_are_queued_and_confident_ones_are_not(client, service, db):
    sure = client.post("/v1/predict", json={"title": "Piscine pompe filtre skimmer chlore", "id": "s1"}).json()
    unsure = client.post("/v1/predict", json={"title": "zzz qqq", "id": "u1",
                                              "image": base64.b64encode(jpeg()).decode()}).json()
    store = ReviewStore.open(db)
    queued = {i["listing_id"]: i for i in store.items()}
    assert ("s1" in queued) == (answer_reason(sure) is not None)
    assert unsure["needs_review"] and queued["u1"]["reason"] == "low_confidence"
    assert queued["u1"]["top_k"][0]["code"] == unsure["top_k"][0]["code"]
    assert queued["u1"]["model_id"] == service.model_id
    assert store.photo_path(queued["u1"]["photo_sha256"]).read_bytes() == jpeg()


def test_disagreeing_modalities_are_a_reason():
    top = [{"code": "1", "probability": 0.9}]
    assert answer_reason({"needs_review": False, "modalities": {"text": top, "image": [{"code": "2"}]}}) \
        == "modalities_disagree"
    assert answer_reason({"needs_review": False, "modalities": {"text": top, "image": None}}) is None


def test_feedback_claim_decide_and_stats(client, service):
    code = service.classes[0]
    r = client.post("/v1/feedback", json={"id": "L9", "title": "Cahier", "description": "", "label": code})
    assert r.status_code == 201, r.text
    item_id = r.json()["item_id"]
    r = client.post("/v1/feedback", json={"id": "L9", "title": "Cahier", "label": "no-such-code"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_label"
    form = client.post("/v1/feedback", data={"title": "Stylo", "label": code, "id": "L10"},
                       files={"image": ("p.jpg", jpeg(), "image/jpeg")})
    assert form.status_code == 201, form.text

    got = client.get("/v1/review/next", params={"reviewer": "ann", "order": "oldest"}).json()["item"]
    assert got["id"] == item_id and got["reason"] == "feedback" and got["given_label"] == code
    other = client.get("/v1/review/next", params={"reviewer": "bob", "order": "oldest"}).json()["item"]
    assert other["id"] != item_id
    assert client.get("/v1/review/next", params={"reviewer": "cyd"}).json() == {"item": None}

    body = {"label": code, "reviewer": "ann", "claim": got["claim"]["token"]}
    r = client.post(f"/v1/review/{item_id}", json=body)
    assert r.status_code == 200 and r.json()["label"] == code
    again = client.post(f"/v1/review/{item_id}", json=body)
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_decided"
    assert client.post(f"/v1/review/{other['id']}", json={"label": code, "reviewer": "ann"}).status_code == 409
    assert client.post("/v1/review/9999", json={"label": code, "reviewer": "ann"}).status_code == 404
    assert client.post(f"/v1/review/{other['id']}", json={"label": "nope", "reviewer": "bob"}).status_code == 422
    stats = client.get("/v1/review/stats").json()
    assert stats["decided"] == 1 and stats["open"] == 1 and stats["claimed"] == 1


def test_review_routes_are_absent_without_a_store(service):
    s = ServingSettings(model_dir=str(service.model_dir))
    with TestClient(create_app(s, service=service), raise_server_exceptions=False) as c:
        assert c.post("/v1/feedback", json={"title": "x", "label": "y"}).status_code == 404


# ---------------------------------------------------------------------------------------------
# a real server, SIGKILLed mid-traffic


def _start_server(bundle, db: str, tmp_path):
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = open(tmp_path / f"server-{port}.log", "w")  # noqa: SIM115 - kept open for the child
    proc = subprocess.Popen([sys.executable, "-m", "prodcat.cli", "serve", "--model", str(bundle),
                             "--port", str(port), "--review-db", db, "--log-level", "warning"],
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"the server did not start: {(tmp_path / f'server-{port}.log').read_text()[-2000:]}")


def _kill_after(proc, acked: list, enough: int, calls) -> None:
    """Run ``calls`` 16 at a time; SIGKILL the server once ``enough`` were acknowledged."""
    import os
    import signal
    import threading
    from concurrent.futures import ThreadPoolExecutor

    lock = threading.Lock()

    def run(call):
        try:
            result = call()
        except Exception:  # noqa: BLE001 - cut off by the kill: not acknowledged
            return
        if result is not None:
            with lock:
                acked.append(result)
                if len(acked) == enough:
                    os.kill(proc.pid, signal.SIGKILL)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(run, calls))
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
def test_sigkilled_server_loses_no_acknowledged_feedback_or_decision(trained_bundle, service, tmp_path):
    import httpx

    db = f"sqlite:///{tmp_path / 'reviews.db'}"
    code = service.classes[0]
    proc, base = _start_server(trained_bundle, db, tmp_path)

    def post(i):
        def call():
            r = httpx.post(f"{base}/v1/feedback", timeout=30,
                           json={"id": f"L{i}", "title": f"Cahier {i}", "description": "", "label": code})
            return f"L{i}" if r.status_code == 201 else None
        return call

    acked: list[str] = []
    _kill_after(proc, acked, 50, [post(i) for i in range(100)])
    stored = {i["listing_id"] for i in ReviewStore.open(db).items()}
    assert len(acked) >= 50 and set(acked) <= stored

    proc, base = _start_server(trained_bundle, db, tmp_path)

    def decide(n):
        def call():
            item = httpx.get(f"{base}/v1/review/next", params={"reviewer": f"r{n}"}, timeout=30).json()["item"]
            if item is None:
                return None
            r = httpx.post(f"{base}/v1/review/{item['id']}", timeout=30,
                           json={"label": code, "reviewer": f"r{n}", "claim": item["claim"]["token"]})
            return item["id"] if r.status_code == 200 else None
        return call

    decided: list[int] = []
    _kill_after(proc, decided, 20, [decide(n) for n in range(len(stored))])
    after = {i["id"]: i for i in ReviewStore.open(db).items()}
    assert len(decided) >= 20
    assert all(after[i]["status"] == "decided" and after[i]["decision"]["label"] == code for i in decided)
