"""The model service behind the REST API: per-modality answers, photo files, micro-batching and
the event loop kept free."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("multipart")
pytest.importorskip("prometheus_client")

from fastapi.testclient import TestClient  # noqa: E402

from prodcat.serving import ModelService, Query, ServingSettings, create_app  # noqa: E402
from prodcat.serving.batching import MicroBatcher  # noqa: E402
from prodcat.serving.images import check_image  # noqa: E402
from test_serving import jpeg, make_client, png  # noqa: E402


@pytest.fixture(scope="module")
def service(trained_bundle) -> ModelService:
    return ModelService.load(trained_bundle)


# --- the model behind it: per-modality answers, photo files, batching, the event loop ----------


class FusedStub:
    """Stands in for the coming text+image model: the Classifier plus ``predict_modalities``,
    recording the photo files it was given."""

    def __init__(self, model, delay: float = 0.0):
        self.inner = model
        self.classes_ = model.classes_
        self.taxonomy_ = model.taxonomy_
        self.threshold_ = model.threshold_
        self.delay = delay
        self.seen: list[tuple[str | None, bytes | None]] = []
        self.calls: list[int] = []

    def predict_proba(self, X):
        time.sleep(self.delay)
        self.calls.append(len(X))
        for x in X:
            path = x.get("image")
            self.seen.append((path, Path(path).read_bytes() if path else None))
        return self.inner.predict_proba(X)

    def describe(self, proba, k=3):
        return self.inner.describe(proba, k)

    def predict_modalities(self, X):
        text = self.inner.predict_proba(X)
        image = np.full_like(text, 1.0 / text.shape[1])
        image[:, -1] += 0.5
        image /= image.sum(axis=1, keepdims=True)
        return {"text": text, "image": image}


def test_per_modality_answers_and_photo_file(service):
    stub = FusedStub(service.model)
    fused = ModelService(stub, service.manifest, service.model_dir)
    photo = jpeg((80, 60))
    with make_client(fused) as c:
        assert c.get("/v1/model").json()["modalities"] == ["text", "image"]
        body = c.post("/v1/predict", data={"title": "Carte pokémon holo"},
                      files={"image": ("p.jpg", photo, "image/jpeg")}).json()
        assert set(body["modalities"]) == {"text", "image"}
        assert body["modalities"]["image"][0]["code"] == service.classes[-1]
        assert body["modalities"]["text"][0]["code"] == "1160"
        path, data = stub.seen[-1]
        # The photo is decoded once, upright RGB at the encoder's size, and stored losslessly.
        assert path.endswith(".png")
        with Image.open(io.BytesIO(data)) as stored:
            assert stored.format == "PNG" and stored.mode == "RGB" and stored.size == (80, 60)
        assert not Path(path).exists()  # removed once answered
        no_photo = c.post("/v1/predict", json={"title": "Carte pokémon holo"}).json()
        assert no_photo["modalities"]["image"] is None and stub.seen[-1] == (None, None)
        tmp_dir = Path(path).parent
    assert not tmp_dir.exists()  # the app's photo folder goes at shutdown


def test_inference_does_not_block_event_loop(service):
    stub = FusedStub(service.model, delay=0.6)
    app = create_app(ServingSettings(model_dir=str(service.model_dir)),
                     service=ModelService(stub, service.manifest, service.model_dir))

    async def scenario():
        import httpx

        transport = httpx.ASGITransport(app=app)
        async with app.router.lifespan_context(app), \
                httpx.AsyncClient(transport=transport, base_url="http://t") as ac:
            slow = asyncio.create_task(ac.post("/v1/predict", json={"title": "Carte"}))
            await asyncio.sleep(0.1)
            t0 = time.perf_counter()
            health = await ac.get("/healthz")
            health_s = time.perf_counter() - t0
            assert not slow.done()
            resp = await slow
            return health, health_s, resp

    health, health_s, resp = asyncio.run(scenario())
    assert health.status_code == 200 and health_s < 0.3
    assert resp.status_code == 200


def test_concurrent_requests_share_model_calls(service):
    stub = FusedStub(service.model, delay=0.2)
    app = create_app(ServingSettings(model_dir=str(service.model_dir)),
                     service=ModelService(stub, service.manifest, service.model_dir))
    with TestClient(app) as c:
        stub.calls.clear()
        results = [None] * 6

        def call(i):
            results[i] = c.post("/v1/predict", json={"title": f"Carte {i}"}).status_code

        threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
            time.sleep(0.02)
        for t in threads:
            t.join()
    assert results == [200] * 6
    assert sum(stub.calls) == 6 and len(stub.calls) < 6  # batched: fewer model calls than requests


def test_batcher_isolates_a_failing_item_and_stops_cleanly(service):
    svc = ModelService(service.model, service.manifest, service.model_dir)
    real = svc.predict

    def flaky(queries):
        if any(q.title == "boom" for q in queries):
            raise RuntimeError("boom")
        return real(queries)

    svc.predict = flaky  # type: ignore[method-assign]
    out = svc.predict_each([Query(title="Carte"), Query(title="boom"), Query(title="Piscine")])
    assert isinstance(out[1], RuntimeError) and out[0]["top_k"] and out[2]["top_k"]

    async def scenario():
        b = MicroBatcher(svc.predict_each, max_batch=2)
        await b.start()
        res = await asyncio.gather(*(b.submit(Query(title=t)) for t in ("Carte", "boom", "Pompe")),
                                   return_exceptions=True)
        await b.stop()
        return res, b

    res, b = asyncio.run(scenario())
    assert isinstance(res[1], RuntimeError) and res[0]["top_k"] and res[2]["top_k"]
    with pytest.raises(Exception, match="not loaded"):
        asyncio.run(b.submit(Query(title="late")))


def test_check_image_formats():
    assert check_image(jpeg(), max_bytes=10**6, max_pixels=10**6).format == "JPEG"
    assert check_image(png(), max_bytes=10**6, max_pixels=10**6).suffix == ".png"
    buf = io.BytesIO()
    Image.new("RGB", (9, 9)).save(buf, "WEBP")
    assert check_image(buf.getvalue(), max_bytes=10**6, max_pixels=10**6).format == "WEBP"


def test_cli_serve_and_ui_refuse_a_missing_bundle(tmp_path, capsys):
    from prodcat.cli import main

    assert main(["serve", "--model", str(tmp_path / "nope")]) == 2
    assert "model bundle not found" in capsys.readouterr().err
    assert main(["ui", "--model", str(tmp_path / "nope")]) == 2
    assert "model bundle not found" in capsys.readouterr().err
