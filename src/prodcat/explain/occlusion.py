"""Occlusion sensitivity (see :mod:`prodcat.explain.image` for the method): grey windows slid
over the encoder's input square, every occluded copy run through the ONNX encoder in batches.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from prodcat.image.encoders import ImageEncoder

#: Occlusion fills: ``grey`` is 127, the encoder's zero input; ``white`` the product-photo
#: background; ``mean`` the photo's mean colour.
FILLS = ("grey", "white", "mean")

#: Default occlusion settings (see :mod:`prodcat.explain.image`).
OCCLUSION_GRID = 8
OCCLUSION_WINDOW = 2
OCCLUSION_FILL = "grey"
OCCLUSION_BATCH = 16


def fill_value(pixels: np.ndarray, fill: str) -> np.ndarray:
    """The RGB colour an occluded region of ``pixels`` is painted with."""
    if fill == "grey":
        return np.array([127, 127, 127], np.uint8)
    if fill == "white":
        return np.array([255, 255, 255], np.uint8)
    return pixels.reshape(-1, 3).mean(axis=0).round().astype(np.uint8)


def embed_in_batches(encoder: ImageEncoder, copies: np.ndarray, batch_size: int) -> np.ndarray:
    return np.concatenate([encoder.embed(copies[s:s + batch_size])
                           for s in range(0, len(copies), batch_size)])


def occlusion(image_model, encoder: ImageEncoder, pixels: np.ndarray, proba: np.ndarray,
              indices: list[int], *, grid: int, window: int, fill: str,
              batch_size: int) -> tuple[list[np.ndarray], dict[str, Any]]:
    """One raw grid per class index (the mean probability drop of the windows covering each
    cell, clipped at 0), and the details of how it was made."""
    size = pixels.shape[0]
    edges = np.linspace(0, size, grid + 1).round().astype(int)
    starts = range(grid - window + 1)
    positions = [(i, j) for i in starts for j in starts]
    value = fill_value(pixels, fill)
    copies = np.repeat(pixels[None], len(positions), axis=0)
    for copy, (i, j) in zip(copies, positions, strict=True):
        copy[edges[i]:edges[i + window], edges[j]:edges[j + window]] = value
    embeddings = embed_in_batches(encoder, copies, batch_size)
    occluded = image_model.proba_from_embeddings(embeddings, np.ones(len(copies), bool))
    grids = []
    for index in indices:
        drops = proba[index] - occluded[:, index]
        total = np.zeros((grid, grid))
        count = np.zeros((grid, grid))
        for drop, (i, j) in zip(drops, positions, strict=True):
            total[i:i + window, j:j + window] += drop
            count[i:i + window, j:j + window] += 1
        grids.append(np.maximum(total / count, 0.0))
    details = {"grid": grid, "window": window, "fill": fill, "occluded_copies": len(positions),
               "score": "probability drop"}
    return grids, details
