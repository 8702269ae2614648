"""The REST API through Starlette's TestClient: every endpoint and every refused input (the model
service behind it: ``test_serving_service.py``)."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("multipart")
pytest.importorskip("prometheus_client")

from fastapi.testclient import TestClient  # noqa: E402

from prodcat.errors import ConfigError  # noqa: E402
from prodcat.serving import ModelService, ServingSettings, create_app, read_api_keys  # noqa: E402
from prodcat.serving.config import digest_key  # noqa: E402

KEY = "test-key-0123456789abcdef"


def jpeg(size: tuple[int, int] = (64, 48), colour: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "JPEG")
    return buf.getvalue()


def png(size: tuple[int, int] = (32, 32)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGBA", size, (0, 0, 255, 128)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def service(trained_bundle) -> ModelService:
    return ModelService.load(trained_bundle)


def make_client(service: ModelService, **settings) -> TestClient:
    s = ServingSettings(model_dir=str(service.model_dir), **settings)
    return TestClient(create_app(s, service=service), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def client(service):
    with make_client(service, max_batch=8, max_image_bytes=200_000, max_image_pixels=1_000_000,
                     max_body_bytes=1_000_000) as c:
        yield c


def assert_error(resp, status: int, code: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


def check_prediction(body: dict, service: ModelService, k: int = 3) -> None:
    top = body["top_k"]
    assert len(top) == min(k, len(service.classes))
    assert all(set(c) == {"code", "name", "parent", "probability"} for c in top)
    probs = [c["probability"] for c in top]
    assert probs == sorted(probs, reverse=True) and all(0 <= p <= 1 for p in probs)
    assert {c["code"] for c in top} <= set(service.classes)
    assert body["needs_review"] == (probs[0] < service.threshold)
    assert body["decision"] == ("needs review" if body["needs_review"] else "automatic")
    assert body["threshold"] == service.threshold
    assert body["modalities"]["text"] == top  # a text-only model: the text answer is the answer


# --- predict ------------------------------------------------------------------------------------


def test_predict_json(client, service):
    r = client.post("/v1/predict", json={"title": "Carte pokémon holo rare booster",
                                         "description": "deck dresseur"})
    assert r.status_code == 200, r.text
    body = r.json()
    check_prediction(body, service)
    assert body["top_k"][0]["code"] == "1160"
    assert body["top_k"][0]["name"] == "Cartes à collectionner"
    assert body["top_k"][0]["parent"] == "Jeux et jouets"
    assert body["model_id"] == service.model_id and body["model_id"].startswith("model-")
    assert body["latency_ms"] > 0
    assert set(body["modalities"]) == {"text"}


def test_predict_matches_classifier(client, service):
    listing = {"title": "Pompe filtre piscine hors-sol", "description": ""}
    expected = service.model.predict_top_k(listing, 3)[0]
    got = client.post("/v1/predict", json=listing).json()["top_k"]
    assert [c["code"] for c in got] == [c["code"] for c in expected]
    assert np.allclose([c["probability"] for c in got], [c["probability"] for c in expected])


def test_predict_multipart_with_image(client, service):
    r = client.post("/v1/predict", data={"title": "Cahier stylo agenda", "description": "papier",
                                         "top_k": "2"},
                    files={"image": ("photo.jpg", jpeg(), "image/jpeg")})
    assert r.status_code == 200, r.text
    check_prediction(r.json(), service, k=2)
    assert r.json()["top_k"][0]["code"] == "2522"


def test_predict_multipart_without_image_and_empty_file_part(client, service):
    r = client.post("/v1/predict", data={"title": "Drone hélice quadricoptère"})
    assert r.status_code == 200, r.text
    # What a browser sends when no file was chosen: an empty part with an empty file name.
    r = client.post("/v1/predict", data={"title": "Drone hélice quadricoptère"},
                    files={"image": ("", b"", "application/octet-stream")})
    assert r.status_code == 200, r.text
    check_prediction(r.json(), service)


def test_predict_json_with_base64_image_and_data_url(client, service):
    b64 = base64.b64encode(png()).decode()
    for image in (b64, "data:image/png;base64," + b64):
        r = client.post("/v1/predict", json={"title": "Spa chlore skimmer", "image": image, "top_k": 1})
        assert r.status_code == 200, r.text
        check_prediction(r.json(), service, k=1)


def test_predict_id_echoed_and_top_k_bounds(client, service):
    r = client.post("/v1/predict", json={"title": "Carte magic foil", "id": "sku-1", "top_k": 4})
    assert r.status_code == 200 and r.json()["id"] == "sku-1" and len(r.json()["top_k"]) == 4
    assert_error(client.post("/v1/predict", json={"title": "x", "top_k": 0}), 422, "invalid_request")
    assert_error(client.post("/v1/predict", json={"title": "x", "top_k": 21}), 422, "invalid_request")


@pytest.mark.parametrize("payload", [{}, {"title": ""}, {"title": "   \n\t"}, {"title": None},
                                     {"description": "only a description"}])
def test_missing_or_empty_title_is_422(client, payload):
    assert_error(client.post("/v1/predict", json=payload), 422, "title_required")


def test_missing_or_empty_title_in_form_is_422(client):
    assert_error(client.post("/v1/predict", data={"description": "x"},
                             files={"image": ("a.jpg", jpeg(), "image/jpeg")}), 422, "title_required")
    assert_error(client.post("/v1/predict", data={"title": " "}), 422, "title_required")


def test_text_over_limit_is_422(client):
    err = assert_error(client.post("/v1/predict", json={"title": "x" * 1001}), 422, "text_too_long")
    assert "1000" in err["message"]
    assert_error(client.post("/v1/predict", json={"title": "ok", "description": "é" * 20_001}),
                 422, "text_too_long")
    assert_error(client.post("/v1/predict", data={"title": "y" * 1001}), 422, "text_too_long")
    # Far over the limit in a form part: refused by the multipart parser, same answer.
    assert_error(client.post("/v1/predict", data={"title": "ok", "description": "z" * 90_000}),
                 422, "text_too_long")


def test_non_image_upload_is_415(client):
    assert_error(client.post("/v1/predict", data={"title": "x"},
                             files={"image": ("a.jpg", b"<html>not found</html>", "image/jpeg")}),
                 415, "unsupported_image")
    # A real image in a format a seller's photo is not accepted in.
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "TIFF")
    assert_error(client.post("/v1/predict", data={"title": "x"},
                             files={"image": ("a.tif", buf.getvalue(), "image/tiff")}),
                 415, "unsupported_image")


def test_corrupt_image_is_422(client):
    data = jpeg((200, 200))
    assert_error(client.post("/v1/predict", data={"title": "x"},
                             files={"image": ("a.jpg", data[: len(data) // 2], "image/jpeg")}),
                 422, "corrupt_image")
    assert_error(client.post("/v1/predict", data={"title": "x"},
                             files={"image": ("a.jpg", b"", "image/jpeg")}), 422, "empty_image")
    b64 = base64.b64encode(data[:300]).decode()
    assert_error(client.post("/v1/predict", json={"title": "x", "image": b64}), 422, "corrupt_image")
    assert_error(client.post("/v1/predict", json={"title": "x", "image": "not base64 at all!"}),
                 422, "invalid_image_encoding")


def test_upload_over_size_limit_is_413(client):
    big = np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(big).save(buf, "PNG")  # noise does not compress: ~480 KB > 200 KB
    assert len(buf.getvalue()) > 200_000
    assert_error(client.post("/v1/predict", data={"title": "x"},
                             files={"image": ("a.png", buf.getvalue(), "image/png")}), 413)
    b64 = base64.b64encode(buf.getvalue()[:210_000]).decode()
    assert_error(client.post("/v1/predict", json={"title": "x", "image": b64}), 413, "image_too_large")
    # A small file that declares too many pixels is refused before it is decoded.
    assert_error(client.post("/v1/predict", data={"title": "x"},
                             files={"image": ("a.png", png((1100, 1000)), "image/png")}),
                 413, "image_too_large")


def test_body_over_limit_is_413_before_reading(client):
    r = client.post("/v1/predict", content=b"{" + b" " * 1_000_001 + b"}",
                    headers={"content-type": "application/json"})
    assert_error(r, 413, "payload_too_large")


def test_chunked_body_over_limit_is_413(client):
    def chunks():
        for _ in range(20):
            yield b" " * 100_000

    r = client.post("/v1/predict", content=chunks(), headers={"content-type": "application/json"})
    assert_error(r, 413, "payload_too_large")


def test_bad_json_and_media_type(client):
    assert_error(client.post("/v1/predict", content=b"{not json",
                             headers={"content-type": "application/json"}), 422, "invalid_json")
    assert_error(client.post("/v1/predict", content=b"", headers={"content-type": "application/json"}),
                 422)
    assert_error(client.post("/v1/predict", json=["a list"]), 422, "invalid_request")
    assert_error(client.post("/v1/predict", json={"title": 5}), 422, "invalid_request")
    assert_error(client.post("/v1/predict", content=b"title=x",
                             headers={"content-type": "text/plain"}), 415, "unsupported_media_type")
    assert_error(client.post("/v1/predict", data={"title": "x", "image": "a string"}), 422)
    # A body that is not the multipart form its header says it is (found by schemathesis).
    assert_error(client.post("/v1/predict", content=b"--b0\r\nFalse--b0--\r\n",
                             headers={"content-type": "multipart/form-data; boundary=b0"}),
                 422, "invalid_multipart")


# --- batch --------------------------------------------------------------------------------------


def test_batch(client, service):
    items = [{"id": "a", "title": "Carte pokémon rare"}, {"id": "b", "title": "Piscine pompe", "top_k": 1},
             {"title": "Cahier", "image": base64.b64encode(jpeg()).decode()}]
    r = client.post("/v1/predict/batch", json={"items": items})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_id"] == service.model_id and body["latency_ms"] > 0
    assert [x["id"] for x in body["results"]] == ["a", "b", None]
    assert [x["top_k"][0]["code"] for x in body["results"]] == ["1160", "2583", "2522"]
    assert len(body["results"][1]["top_k"]) == 1
    # Same answers as one at a time.
    single = client.post("/v1/predict", json=items[0]).json()
    assert np.isclose(single["top_k"][0]["probability"], body["results"][0]["top_k"][0]["probability"])


def test_batch_refusals(client):
    assert_error(client.post("/v1/predict/batch", json={"items": [{"title": "x"}] * 9}), 413, "batch_too_large")
    assert_error(client.post("/v1/predict/batch", json={"items": []}), 422, "invalid_request")
    assert_error(client.post("/v1/predict/batch", json={}), 422, "invalid_request")
    err = assert_error(client.post("/v1/predict/batch", json={"items": [{"title": "x"}, {"title": ""}]}),
                       422, "title_required")
    assert "items.1.title" in err["message"]
    err = assert_error(client.post("/v1/predict/batch",
                                   json={"items": [{"title": "x", "image": base64.b64encode(jpeg()[:300]).decode()}]}),
                       422, "corrupt_image")
    assert "items.0.image" in err["message"]
    assert_error(client.post("/v1/predict/batch", content=b"[", headers={"content-type": "application/json"}),
                 422, "invalid_json")
    assert_error(client.post("/v1/predict/batch", data={"title": "x"}), 415)


# --- the other endpoints ------------------------------------------------------------------------


def test_categories(client, service):
    body = client.get("/v1/categories").json()
    assert body["count"] == 4 == len(body["categories"])
    assert body["categories"][0] == {"code": "1160", "name": "Cartes à collectionner",
                                     "parent": "Jeux et jouets"}


def test_model_summary(client, service):
    body = client.get("/v1/model").json()
    assert body["model_id"] == service.model_id
    assert body["n_classes"] == 4 and body["threshold"] == service.threshold and body["modalities"] == ["text"]
    assert body["training"]["n_listings"] > 0 and "class_counts" not in body["training"]
    assert body["limits"]["max_batch"] == 8
    assert "taxonomy" not in body and "parameters" not in body


def test_health_ready_metrics_docs(client):
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    client.post("/v1/predict", json={"title": "Carte holo"})
    text = client.get("/metrics").text
    assert 'prodcat_http_requests_total{method="POST",route="/v1/predict",status="200"}' in text
    assert "prodcat_inference_batch_size_bucket" in text and "prodcat_ready 1.0" in text
    assert 'prodcat_predictions_total{decision=' in text
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    assert {"/v1/predict", "/v1/predict/batch", "/v1/categories", "/v1/model", "/healthz", "/readyz",
            "/metrics"} <= set(schema["paths"])
    content = schema["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert set(content) == {"application/json", "multipart/form-data"}
    assert schema["components"]["schemas"]["PredictRequest"]["properties"]["title"]["maxLength"] == 1000


def test_unknown_route_and_method_are_json_errors(client):
    assert_error(client.get("/v2/nothing"), 404, "not_found")
    assert_error(client.get("/v1/predict"), 405, "method_not_allowed")


def test_metrics_route_label_is_bounded(client):
    for i in range(5):
        client.get(f"/random/{i}")
    text = client.get("/metrics").text
    assert "/random/" not in text and 'route="unmatched"' in text


def test_not_ready_before_startup(service):
    c = make_client(service)  # not entered: the lifespan (model start-up) has not run
    assert_error(c.get("/readyz"), 503, "not_ready")
    assert_error(c.post("/v1/predict", json={"title": "x"}), 503, "not_ready")
    assert c.get("/healthz").status_code == 200


# --- API keys -----------------------------------------------------------------------------------


def test_api_keys(service):
    with make_client(service, api_key_digests=(digest_key(KEY),)) as c:
        assert_error(c.post("/v1/predict", json={"title": "x"}), 401, "unauthorized")
        r = c.post("/v1/predict", json={"title": "x"}, headers={"X-API-Key": "wrong-key-wrong-key"})
        assert_error(r, 401, "unauthorized")
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert_error(c.get("/v1/categories"), 401)
        assert_error(c.get("/v1/model"), 401)
        assert c.post("/v1/predict", json={"title": "x"}, headers={"X-API-Key": KEY}).status_code == 200
        assert c.get("/v1/categories", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
        assert c.get("/healthz").status_code == 200 and c.get("/readyz").status_code == 200
        schemes = c.get("/openapi.json").json()["components"]["securitySchemes"]
        assert "APIKeyHeader" in schemes


def test_read_api_keys(tmp_path):
    assert read_api_keys(environ={}) == ()  # no keys anywhere: open, never a default secret
    env = {"PRODCAT_API_KEYS": f"{KEY}, {KEY}x ,"}
    assert read_api_keys(environ=env) == tuple(sorted({digest_key(KEY), digest_key(KEY + "x")}))
    f = tmp_path / "keys"
    f.write_text(f"# comment\n{KEY}  # trailing comment\n\n", encoding="utf-8")
    assert read_api_keys(f, environ={}) == (digest_key(KEY),)
    assert read_api_keys(environ={"PRODCAT_API_KEY_FILE": str(f)}) == (digest_key(KEY),)
    with pytest.raises(ConfigError, match="shorter"):
        read_api_keys(environ={"PRODCAT_API_KEYS": "short"})
    f.write_text("# nothing\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="no keys"):
        read_api_keys(f, environ={})
    with pytest.raises(ConfigError, match="cannot read"):
        read_api_keys(tmp_path / "absent", environ={})


def test_settings_round_trip_through_env():
    s = ServingSettings(model_dir="/m", max_batch=3, api_key_digests=("ab",))
    assert ServingSettings.from_env({"PRODCAT_SERVE_SETTINGS": s.to_env()}) == s
    with pytest.raises(ConfigError):
        ServingSettings.from_env({})
    with pytest.raises(ConfigError):
        ServingSettings(model_dir="/m", max_batch=0)
