"""Serving: the REST API (``prodcat serve``) and the model service the web app shares.

Needs the ``serve`` extra (FastAPI, uvicorn, python-multipart, prometheus-client). Importing this
package imports none of them; :func:`create_app` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prodcat.serving.config import ServingSettings, read_api_keys
from prodcat.serving.service import ModelService, Query

if TYPE_CHECKING:
    from fastapi import FastAPI


def create_app(settings: ServingSettings, service: ModelService | None = None) -> FastAPI:
    """The FastAPI app (see :func:`prodcat.serving.app.create_app`)."""
    from prodcat.serving.app import create_app as _create_app

    return _create_app(settings, service)


__all__ = ["ModelService", "Query", "ServingSettings", "create_app", "read_api_keys"]
