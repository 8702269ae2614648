"""The ``prodcat`` command: one click group, one module per verb or family of verbs.

``options`` holds the option groups several verbs share, ``modelling`` what the model options
build, ``common`` the helpers all verbs use. :func:`main` is the console entry point: user errors
become one ``error:`` line and exit code 2, never a traceback.
"""

from __future__ import annotations

import os
import traceback
import warnings

import click

from prodcat.cli.audit import audit as audit_command
from prodcat.cli.common import echo, read_data
from prodcat.cli.compare import compare as compare_command
from prodcat.cli.corrections import corrections as corrections_command
from prodcat.cli.demo import demo as demo_command
from prodcat.cli.evaluate import evaluate as evaluate_command
from prodcat.cli.explain import explain as explain_command
from prodcat.cli.explore import explore as explore_command
from prodcat.cli.info import info as info_command
from prodcat.cli.modelling import build_classifier, fit_params
from prodcat.cli.monitor import monitor as monitor_command
from prodcat.cli.ocr import ocr as ocr_command
from prodcat.cli.options import (
    DATA_DEFAULTS,
    MODEL_DEFAULTS,
    TRACKING_DEFAULTS,
    data_options,
    model_options,
    tracking_options,
)
from prodcat.cli.predict import embed as embed_command
from prodcat.cli.predict import predict as predict_command
from prodcat.cli.runs import runs as runs_command
from prodcat.cli.serve import serve as serve_command
from prodcat.cli.serve import ui as ui_command
from prodcat.cli.train import train as train_command
from prodcat.errors import ProdcatError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="prodcat")
def cli():
    """prodcat: put marketplace listings into the right product category."""


for _command in (train_command, evaluate_command, predict_command, embed_command, explain_command,
                 info_command, runs_command, demo_command, explore_command, serve_command, ui_command,
                 audit_command, corrections_command, ocr_command, compare_command, monitor_command):
    cli.add_command(_command)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    echo(f"warning: {message}")


def main(argv=None) -> int:
    """Entry point: user errors become one line and exit code 2, never a traceback."""
    warnings.showwarning = _show_warning
    try:
        cli.main(args=argv, prog_name="prodcat", standalone_mode=False)
    except ProdcatError as exc:
        echo(f"error: {exc}")
        return exc.exit_code
    except click.exceptions.Abort:
        echo("aborted")
        return 130
    except click.ClickException as exc:
        exc.show()
        return 2
    except KeyboardInterrupt:
        echo("interrupted")
        return 130
    except MemoryError:
        echo("error: out of memory; try a smaller --max-description-chars or fewer listings")
        return 1
    except Exception as exc:  # a bug: say so plainly, keep the traceback for PRODCAT_DEBUG=1
        if os.environ.get("PRODCAT_DEBUG"):
            traceback.print_exc()
        echo(f"internal error: {type(exc).__name__}: {exc} (set PRODCAT_DEBUG=1 for details; please report it)")
        return 1
    return 0


__all__ = ["DATA_DEFAULTS", "MODEL_DEFAULTS", "TRACKING_DEFAULTS", "build_classifier", "cli",
           "data_options", "echo", "fit_params", "main", "model_options", "read_data", "tracking_options"]
