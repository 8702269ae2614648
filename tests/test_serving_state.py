"""The API's endpoint logic called directly, without HTTP: functions of an ``AppState``."""

from __future__ import annotations

import asyncio
import base64
import io

import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")

from pydantic import ValidationError  # noqa: E402

from prodcat.serving import ModelService, Query, ServingSettings, routes  # noqa: E402
from prodcat.serving.config import digest_key  # noqa: E402
from prodcat.serving.errors import ServingError  # noqa: E402
from prodcat.serving.parsing import decode_base64, validation_error  # noqa: E402
from prodcat.serving.state import AppState  # noqa: E402

KEY = "state-key-0123456789abcdef"


@pytest.fixture(scope="module")
def service(trained_bundle) -> ModelService:
    return ModelService.load(trained_bundle)


def started(state: AppState, work):
    """Run ``work(state)`` (a coroutine function) between the app's start-up and shutdown."""
    async def scenario():
        await state.start()
        try:
            return await work(state)
        finally:
            await state.stop()

    return asyncio.run(scenario())


def jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (20, 120, 200)).save(buf, "JPEG")
    return buf.getvalue()


def test_a_state_not_started_refuses_with_503(service):
    state = AppState(ServingSettings(model_dir="unused"), service=service)
    for endpoint in (routes.categories_of, routes.model_summary, routes.readiness):
        with pytest.raises(ServingError) as err:
            endpoint(state)
        assert (err.value.status, err.value.code) == (503, "not_ready")


def test_predictions_and_summaries_without_http(service):
    state = AppState(ServingSettings(model_dir=str(service.model_dir), max_batch=5), service=service)
    one = state.models.predict(title="Carte pokémon holo rare booster", top_k=2)
    many = [(state.models.predict(id=str(i), title=t), None)
            for i, t in enumerate(["Pompe filtre piscine hors-sol", "Cahier stylo agenda"])]

    async def work(state):
        return (await routes.predict_listing(state, one, None), await routes.predict_listings(state, many),
                await routes.predict_listing(state, one, jpeg()), routes.categories_of(state),
                routes.model_summary(state), routes.readiness(state))

    single, batch, with_photo, cats, summary, ready = started(state, work)
    expected = service.predict([Query(title=one.title, top_k=2)])[0]
    assert single == {**expected, "id": None, "model_id": service.model_id}
    assert with_photo["top_k"][0]["code"] == single["top_k"][0]["code"]  # a text-only model
    assert [r["id"] for r in batch["results"]] == ["0", "1"] and batch["model_id"] == service.model_id
    assert [r["top_k"] for r in batch["results"]] == [p["top_k"] for p in service.predict(
        [Query(title=m.title) for m, _ in many])]
    assert cats == {"count": len(service.classes), "categories": service.categories}
    assert summary["limits"]["max_batch"] == 5 and summary["model_id"] == service.model_id
    assert ready == {"status": "ready", "model_id": service.model_id}
    assert not state.ready  # stopped: answers 503 again
    with pytest.raises(ServingError, match="not loaded"):
        routes.readiness(state)
    registry = state.metrics.registry
    decisions = ("automatic", "needs review")
    assert sum(registry.get_sample_value("prodcat_predictions_total", {"decision": d}) or 0
               for d in decisions) == 4
    assert registry.get_sample_value("prodcat_images_total") == 1


def test_a_bad_photo_is_refused_before_the_model_runs(service):
    state = AppState(ServingSettings(model_dir="unused"), service=service)
    listing = state.models.predict(title="Carte")

    async def work(state):
        with pytest.raises(ServingError) as err:
            await routes.predict_listing(state, listing, b"not an image at all")
        return err.value

    err = started(state, work)
    assert err.status == 415 and err.code.startswith("unsupported")


def test_api_key_check():
    settings = ServingSettings(model_dir="unused", api_key_digests=(digest_key(KEY),))
    routes.check_api_key(settings, KEY)
    for wrong in (None, "", "another-key-0123456789"):
        with pytest.raises(ServingError) as err:
            routes.check_api_key(settings, wrong)
        assert err.value.status == 401 and err.value.headers["WWW-Authenticate"].startswith("Bearer")


def test_input_checks_map_to_the_api_codes():
    s = ServingSettings(model_dir="unused", max_title_chars=10, max_image_bytes=30)
    models = AppState(s).models
    with pytest.raises(ValidationError) as exc:
        models.predict(title="   ")
    assert validation_error(exc.value, s).code == "title_required"
    with pytest.raises(ValidationError) as exc:
        models.predict(title="x" * 11)
    err = validation_error(exc.value, s)
    assert (err.status, err.code) == (422, "text_too_long") and "at most 10 characters" in err.message
    photo = b"\xff\xd8 twenty bytes or so"
    encoded = base64.b64encode(photo).decode()
    assert decode_base64(encoded, "image", s) == photo
    assert decode_base64("data:image/jpeg;base64," + encoded, "image", s) == photo
    with pytest.raises(ServingError) as bad:
        decode_base64("not base64!", "items.0.image", s)
    assert (bad.value.status, bad.value.code) == (422, "invalid_image_encoding")
    assert bad.value.message.startswith("items.0.image")
    with pytest.raises(ServingError) as big:
        decode_base64(base64.b64encode(b"x" * 100).decode(), "image", s)
    assert big.value.status == 413
