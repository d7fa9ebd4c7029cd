"""The embedded default dataset: procedural scenes, deterministic from a seed, nothing to download.

A class is a *shape* (disk, square, triangle, ring, cross, bar, diamond, ...), not a colour:
every object is filled from the same bright palette and texture model, and the background
from two dark colours. Inside an object a 3x3 patch says "object" but not which one; the
class needs the object's outline, i.e. context of about the object's size.
Objects range from about 4 pixels across to half the image, so small-object IoU is measurable.
Train and val are drawn from different seeds.
"""

from __future__ import annotations

import numpy as np
import torch

from bench.data.base import SegData
from bench.errors import UserError

__all__ = ["SHAPES", "check_synthetic", "make_synthetic", "render_scene"]

SHAPES = ("disk", "square", "triangle", "ring", "cross", "bar", "diamond", "ellipse", "frame", "half_disk")
SPLIT_SEED = {"train": 0, "val": 1, "test": 2}


def _shape_mask(shape: str, yy: np.ndarray, xx: np.ndarray, r: float, angle: float) -> np.ndarray:
    """Boolean mask of a shape of radius r centred at 0, rotated by `angle` (radians)."""
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * xx + s * yy, -s * xx + c * yy
    au, av = np.abs(u), np.abs(v)
    if shape == "disk":
        return u**2 + v**2 <= r**2
    if shape == "square":
        return (au <= r * 0.85) & (av <= r * 0.85)
    if shape == "triangle":
        return (v <= r * 0.6) & (v >= 2 * au - r)
    if shape == "ring":
        d = u**2 + v**2
        return (d <= r**2) & (d >= (0.55 * r) ** 2)
    if shape == "cross":
        return ((au <= r) & (av <= r * 0.3)) | ((av <= r) & (au <= r * 0.3))
    if shape == "bar":
        return (au <= r) & (av <= r * 0.25)
    if shape == "diamond":
        return au + av <= r
    if shape == "ellipse":
        return (u / r) ** 2 + (v / (0.5 * r)) ** 2 <= 1
    if shape == "frame":
        return (au <= r * 0.85) & (av <= r * 0.85) & ~((au <= r * 0.5) & (av <= r * 0.5))
    if shape == "half_disk":
        return (u**2 + v**2 <= r**2) & (v >= 0)
    raise ValueError(shape)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int, amp: float) -> np.ndarray:
    """Low-frequency shading: a coarse random grid, bilinearly upsampled (H x W x 1)."""
    gh, gw = cells + 1, cells + 1
    grid = rng.normal(0, amp, size=(gh, gw))
    ys, xs = np.linspace(0, gh - 1, h), np.linspace(0, gw - 1, w)
    y0, x0 = np.floor(ys).astype(int).clip(0, gh - 2), np.floor(xs).astype(int).clip(0, gw - 2)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    g = grid
    top = g[y0][:, x0] * (1 - fx) + g[y0][:, x0 + 1] * fx
    bot = g[y0 + 1][:, x0] * (1 - fx) + g[y0 + 1][:, x0 + 1] * fx
    return (top * (1 - fy) + bot * fy)[..., None]


def _fill(rng: np.random.Generator, h: int, w: int, color: np.ndarray) -> np.ndarray:
    """The one texture model for objects and background: colour + smooth shading + fine noise."""
    return color[None, None, :] + _smooth_noise(rng, h, w, 3, 12.0) + rng.normal(0, 6, size=(h, w, 3))


def render_scene(rng: np.random.Generator, height: int, width: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One scene: uint8 image H x W x 3 and uint8 mask H x W (0 = background, 1.. = shapes).

    Background colours are drawn dark and object colours bright, so a 3x3 patch tells
    'object' from 'background'; every object class draws its colour from the same bright
    palette, so only the outline (context of about the object's size) tells the class.
    """
    dark = rng.uniform(15, 110, size=(2, 3))
    bright = rng.uniform(140, 245, size=(4, 3))
    blend = (0.5 + 0.5 * np.sin(np.arange(width)[None, :] * rng.uniform(0.02, 0.15) + rng.uniform(0, 6)))[..., None]
    img = blend * _fill(rng, height, width, dark[0]) + (1 - blend) * _fill(rng, height, width, dark[1])
    mask = np.zeros((height, width), dtype=np.uint8)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    side = min(height, width)
    for _ in range(int(rng.integers(4, 11))):
        cls = int(rng.integers(1, num_classes))
        r = float(np.exp(rng.uniform(np.log(2.0), np.log(side / 4))))  # ~4 px .. half the image across
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        m = _shape_mask(SHAPES[(cls - 1) % len(SHAPES)], yy - cy, xx - cx, r, rng.uniform(0, np.pi))
        if not m.any():
            continue
        fill = _fill(rng, height, width, bright[int(rng.integers(0, 4))])
        img[m] = fill[m]
        mask[m] = cls
    return np.clip(img, 0, 255).astype(np.uint8), mask


def check_synthetic(*, split: str, size: tuple[int, int], classes: int) -> None:
    """What the synthetic dataset refuses, before anything is rendered (the pre-flight calls it)."""
    if split not in SPLIT_SEED:
        raise UserError(f"data.split={split!r}: the synthetic dataset has splits {', '.join(SPLIT_SEED)}")
    if not 2 <= classes <= len(SHAPES) + 1:
        raise UserError(
            f"data.classes={classes}: synthetic scenes have 2..{len(SHAPES) + 1} classes (background + shapes)"
        )
    if min(size) < 16:
        raise UserError(f"data.size={list(size)}: synthetic scenes need at least 16x16 pixels, e.g. data.size=[64,64]")


def make_synthetic(
    *, split: str = "train", size: tuple[int, int] = (64, 64), count: int | None = None, classes: int = 6, seed: int = 0
) -> SegData:
    """Render a split: `count` scenes (default 512 train, 128 val/test) of `classes` classes."""
    check_synthetic(split=split, size=size, classes=classes)
    h, w = size
    n = count if count is not None else (512 if split == "train" else 128)
    images = np.empty((n, h, w, 3), dtype=np.uint8)
    masks = np.empty((n, h, w), dtype=np.uint8)
    for i in range(n):
        rng = np.random.default_rng([seed, SPLIT_SEED[split], i])
        images[i], masks[i] = render_scene(rng, h, w, classes)
    names = ("background", *SHAPES[: classes - 1])
    return SegData(
        images=torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
        masks=torch.from_numpy(masks),
        num_classes=classes,
        class_names=names,
        ignore_index=255,
    )
