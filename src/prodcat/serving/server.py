"""Running the API under uvicorn (``prodcat serve``)."""

from __future__ import annotations

import logging
import os

from prodcat.serving.config import SETTINGS_ENV, ServingSettings
from prodcat.serving.service import ModelService


def run_server(settings: ServingSettings, *, host: str = "127.0.0.1", port: int = 8000,
               workers: int = 1, log_level: str = "info", access_log: bool = False,
               service: ModelService | None = None) -> None:
    """Serve until SIGINT/SIGTERM, then stop accepting, finish open requests (up to 10 s) and
    unload the model.

    One worker by default: the model is loaded once and concurrent requests are micro-batched,
    which serves more than extra processes would on a small machine (each worker holds its own
    copy of the model). ``workers`` > 1 starts that many processes, each loading the bundle.
    """
    import uvicorn

    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    common = {"host": host, "port": port, "log_level": log_level, "access_log": access_log,
              "timeout_graceful_shutdown": 10, "server_header": False,
              # Slow clients must not hold connections forever.
              "timeout_keep_alive": 5}
    if workers <= 1:
        from prodcat.serving.app import create_app

        uvicorn.run(create_app(settings, service=service), **common)
        return
    # Worker processes import the app by name; they read the settings from the environment.
    os.environ[SETTINGS_ENV] = settings.to_env()
    uvicorn.run("prodcat.serving.app:app_from_env", factory=True, workers=workers, **common)
