"""Property-based: schemathesis generates requests from the API's own OpenAPI schema (valid and
invalid ones) against a real uvicorn server on loopback; no request may cause a server error and
every answer must match the documented status codes, content types and schemas."""

from __future__ import annotations

import socket
import threading
import time

import pytest

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")
uvicorn = pytest.importorskip("uvicorn")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from prodcat.serving import ModelService, ServingSettings, create_app  # noqa: E402

# Small limits so the generator reaches them; the schema is made from the same settings.
SETTINGS = dict(max_batch=4, max_title_chars=200, max_description_chars=400, max_image_bytes=50_000,
                max_body_bytes=200_000)


def _schema_app():
    # The OpenAPI document does not depend on the model: build it without loading one.
    return create_app(ServingSettings(model_dir="unused", **SETTINGS))


schema = schemathesis.openapi.from_dict(_schema_app().openapi())
schema.config.generation.update(
    modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE],
    max_examples=40, deterministic=True, database="none")


@pytest.fixture(scope="module")
def api_base(trained_bundle):
    """A real server (uvicorn, in a thread of this process) on a free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = create_app(ServingSettings(model_dir=str(trained_bundle), **SETTINGS),
                     service=ModelService.load(trained_bundle))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=15)


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_api_schema_no_server_error(case, api_base):
    response = case.call(base_url=api_base, timeout=30)
    case.validate_response(response, checks=[not_a_server_error, status_code_conformance,
                                             content_type_conformance, response_schema_conformance])
