"""Generated images of simple shapes: a dataset that needs no files and no network.

Class k draws shape SHAPES[k] at a random position and size, on a dark background, with gaussian
pixel noise. Everything comes from one numpy Generator seeded with `seed`, so the same parameters
always give the same pixels; GENERATOR_VERSION enters the fingerprint and must be bumped whenever
the drawing code changes what it produces.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from service.datasets.source import Source
from service.spec.datasets import SyntheticDataset

GENERATOR_VERSION = 1
SHAPES = (
    "circle",
    "square",
    "triangle",
    "cross",
    "horizontal_bar",
    "vertical_bar",
    "ring",
    "diamond",
)
_CHUNK = 2048  # samples drawn at once: bounds the (n, H, W) temporaries for large datasets


def class_counts(spec: SyntheticDataset) -> list[int]:
    """Samples per class: with imbalance r, class k gets samples_per_class / r**(k/(K-1))."""
    last = spec.classes - 1
    return [
        max(2, round(spec.samples_per_class / spec.imbalance ** (k / last)))
        for k in range(spec.classes)
    ]


def fingerprint(spec: SyntheticDataset) -> str:
    params = {
        "generator_version": GENERATOR_VERSION,
        "image_size": spec.image_size,
        "channels": spec.channels,
        "classes": spec.classes,
        "samples_per_class": spec.samples_per_class,
        "noise": spec.noise,
        "imbalance": spec.imbalance,
        "seed": spec.seed,
    }
    text = json.dumps(params, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read(spec: SyntheticDataset, field: str, arrays: bool) -> Source:
    counts = class_counts(spec)
    # Samples are ordered by class, so the labels are known without drawing a pixel.
    y = np.repeat(np.arange(spec.classes, dtype=np.int64), counts)
    source = Source(
        fingerprint=fingerprint(spec),
        input_shape=(spec.image_size, spec.image_size, spec.channels),
        class_names=list(SHAPES[: spec.classes]),
        n_train=len(y),
        y_train=y,
    )
    if arrays:
        source.x_train = generate(spec, counts)
    return source


def generate(spec: SyntheticDataset, counts: list[int]) -> np.ndarray:
    """float32 images (N, S, S, C) in [0, 1], class by class in label order."""
    rng = np.random.default_rng(spec.seed)
    size, channels = spec.image_size, spec.channels
    out = np.empty((sum(counts), size, size, channels), dtype=np.float32)
    grid = np.arange(size, dtype=np.float32) + 0.5  # pixel centres
    start = 0
    for label, n in enumerate(counts):
        radius = rng.uniform(0.2, 0.4, n).astype(np.float32) * size
        cx = rng.uniform(radius, size - radius).astype(np.float32)
        cy = rng.uniform(radius, size - radius).astype(np.float32)
        background = rng.uniform(0.0, 0.15, (n, 1)).astype(np.float32)
        # Grayscale shapes are bright; colour shapes get a random colour (still brighter than 0.3).
        colour = rng.uniform(0.6 if channels == 1 else 0.3, 1.0, (n, channels)).astype(np.float32)
        for lo in range(0, n, _CHUNK):
            part = slice(lo, min(lo + _CHUNK, n))
            dx = grid[None, None, :] - cx[part, None, None]
            dy = grid[None, :, None] - cy[part, None, None]
            mask = _mask(SHAPES[label], dx, dy, radius[part, None, None])
            bg = background[part, None, None, :]
            images = bg + mask[..., None] * (colour[part, None, None, :] - bg)
            if spec.noise > 0:
                images += rng.normal(0.0, spec.noise, images.shape).astype(np.float32)
            out[start + lo : start + part.stop] = np.clip(images, 0.0, 1.0)
        start += n
    return out


def _mask(shape: str, dx: np.ndarray, dy: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Boolean (n, S, S) mask of `shape` centred at dx = dy = 0 with half-size r."""
    ax, ay = np.abs(dx), np.abs(dy)
    # Bars keep at least 1.5 px of thickness so they survive 8x8 images.
    thick = np.maximum(0.25 * r, 0.75)
    if shape == "circle":
        return dx**2 + dy**2 <= r**2
    if shape == "square":
        return np.maximum(ax, ay) <= 0.8 * r
    if shape == "triangle":  # apex up: half-width grows from 0 at the top to r at the base
        return (ay <= r) & (ax <= (dy + r) / 2)
    if shape == "cross":
        return ((ax <= thick) & (ay <= r)) | ((ay <= thick) & (ax <= r))
    if shape == "horizontal_bar":
        return (ay <= thick) & (ax <= r)
    if shape == "vertical_bar":
        return (ax <= thick) & (ay <= r)
    if shape == "ring":
        distance = dx**2 + dy**2
        return (distance <= r**2) & (distance >= (0.6 * r) ** 2)
    if shape == "diamond":
        return ax + ay <= r
    raise ValueError(f"unknown shape {shape!r}")
