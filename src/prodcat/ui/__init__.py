"""The seller web app (``prodcat ui``): a Streamlit front end over the same ModelService as the API.

Needs the ``ui`` extra (Streamlit). :mod:`prodcat.ui.core` holds the page logic that does not
need Streamlit; :mod:`prodcat.ui.app` is the Streamlit script.
"""

from prodcat.ui.launch import APP_PATH, MODEL_ENV, REPORT_ENV, streamlit_command

__all__ = ["APP_PATH", "MODEL_ENV", "REPORT_ENV", "streamlit_command"]
