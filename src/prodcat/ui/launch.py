"""Starting the Streamlit app: the command line and the environment it reads its settings from."""

from __future__ import annotations

import sys
from pathlib import Path

#: The Streamlit script.
APP_PATH = Path(__file__).with_name("app.py")
#: Environment variables the script reads (Streamlit owns the command line of its scripts).
MODEL_ENV = "PRODCAT_UI_MODEL"
REPORT_ENV = "PRODCAT_UI_REPORT"
DATA_REPORT_ENV = "PRODCAT_UI_DATA_REPORT"
IMAGE_BYTES_ENV = "PRODCAT_UI_MAX_IMAGE_BYTES"
#: The review store of the review page (a SQLAlchemy URL) and the order its queue is served in.
REVIEW_DB_ENV = "PRODCAT_UI_REVIEW_DB"
REVIEW_ORDER_ENV = "PRODCAT_UI_REVIEW_ORDER"


def streamlit_command(*, host: str = "127.0.0.1", port: int = 8501, max_upload_mb: int = 8,
                      python: str | None = None) -> list[str]:
    """``python -m streamlit run app.py`` with the options a served app needs: no telemetry, no
    browser to open, no file watcher (nothing is edited in production), bounded uploads."""
    return [
        python or sys.executable, "-m", "streamlit", "run", str(APP_PATH),
        "--server.address", host,
        "--server.port", str(port),
        "--server.headless", "true",
        "--server.fileWatcherType", "none",
        "--server.runOnSave", "false",
        "--server.maxUploadSize", str(max_upload_mb),
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "minimal",
        "--theme.base", "light",
    ]
