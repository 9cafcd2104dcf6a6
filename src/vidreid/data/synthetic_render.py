"""Cameras, backgrounds, occluders and the frame loop of the synthetic video re-ID set.

A :class:`Camera` fixes what one view does to every person it sees: background (wall gradient, clutter,
floor with perspective lines, texture), view axis (front/back or walking left/right), person scale and
aspect, colour cast (per-channel gains, saturation, haze, gamma), lighting ramp, Gaussian blur, sensor noise
and JPEG quality. A :class:`TrackPlan` adds the per-tracklet draws (view, length, speed, offsets,
brightness, optional occluder). :func:`render_tracklet` turns ``(Identity, Camera, TrackPlan)`` into
frames; every random draw comes from ``numpy.random.default_rng(plan.rng_key)``, so frames are
deterministic. People are drawn at 2x and box-downsampled (anti-aliasing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from vidreid.data.synthetic_people import COLOURS, TOP_WEIGHTS, Identity, Painter, draw_person, shade

RGB = tuple[int, int, int]
SUPERSAMPLE = 2
PANORAMA_WIDTHS = 6  # background panorama width, in crop widths
# Illuminant presets (per-channel gains): tungsten, shade, fluorescent, sodium-magenta, dim, overcast...
ILLUMINANTS = [(1.3, 1.0, 0.66), (0.74, 0.93, 1.3), (0.86, 1.18, 0.82), (1.18, 0.8, 1.12), (0.62, 0.64, 0.66),
               (1.12, 1.12, 1.08), (1.0, 0.86, 0.7), (0.8, 1.0, 1.05)]  # fmt: skip


@dataclass(frozen=True)
class Camera:
    """Fixed rendering parameters of one camera (see module docstring).

    ``axis`` is "frontal" (people seen from the front or back) or "lateral" (walking right or left);
    ``main_view`` is the more frequent of the two. ``scale`` is the person height / crop height,
    ``aspect`` a horizontal stretch of the person, ``blur`` the Gaussian sigma in output pixels,
    ``noise`` the sensor noise std in 0..255 units, ``ramp`` the lighting gradient ``(x, y)`` across the crop.
    ``bg_seed`` seeds the background panorama.
    """

    index: int
    axis: str
    main_view: str
    gains: tuple[float, float, float]
    saturation: float
    gamma: float
    haze: float
    haze_colour: RGB
    scale: float
    aspect: float
    blur: float
    noise: float
    jpeg_quality: int
    ramp: tuple[float, float]
    horizon: float
    bg_seed: int


@dataclass(frozen=True)
class Occluder:
    """A partial occluder of one tracklet, in crop-width units at frame 0.

    kind "pole" (static vertical bar), "box" (static obstacle standing on the ground, ``height`` in crop
    heights) or "passerby" (another person, ``identity``, crossing at ``speed`` crop widths per frame).
    Static occluders slide with the background as the crop follows the walking person.
    """

    kind: str
    x: float
    width: float = 0.0
    height: float = 0.0
    colour: RGB = (0, 0, 0)
    speed: float = 0.0
    identity: Identity | None = None


@dataclass(frozen=True)
class TrackPlan:
    """Per-tracklet draws. ``speed``: background scroll in crop widths per frame (signed, world motion);
    ``x_offset``: person centre offset in crop widths; ``approach``: relative size change over the tracklet;
    ``brightness``: global gain; ``bg_start``: panorama column (crop widths) of the first frame."""

    length: int
    view: str
    speed: float
    x_offset: float
    scale: float
    approach: float
    brightness: float
    phase0: float
    cadence: float
    bg_start: float
    rng_key: tuple[int, ...]
    occluder: Occluder | None = field(default=None)


def sample_camera(rng: np.random.Generator, index: int, illuminant: int) -> Camera:
    """Draw camera ``index``: frontal for even, lateral for odd indices; gains from ``ILLUMINANTS[illuminant]``."""
    axis = "frontal" if index % 2 == 0 else "lateral"
    views = ("front", "back") if axis == "frontal" else ("right", "left")
    base = np.array(ILLUMINANTS[illuminant % len(ILLUMINANTS)])
    return Camera(
        index=index,
        axis=axis,
        main_view=views[int(rng.integers(2))],
        gains=tuple(float(g) for g in np.round(base * rng.uniform(0.94, 1.06, 3), 3)),
        saturation=float(rng.uniform(0.45, 1.2)),
        gamma=float(rng.uniform(0.75, 1.35)),
        haze=float(rng.uniform(0.0, 0.25)),
        haze_colour=tuple(int(v) for v in rng.integers(120, 230, 3)),
        scale=float(rng.uniform(0.72, 0.9)),
        aspect=float(rng.uniform(0.85, 1.15)),
        blur=float(rng.choice([0.0, rng.uniform(0.4, 1.3)])),
        noise=float(rng.uniform(1.0, 6.0)),
        jpeg_quality=int(rng.integers(70, 93)),
        ramp=(float(rng.uniform(-0.3, 0.3)), float(rng.uniform(-0.25, 0.25))),
        horizon=float(rng.uniform(0.45, 0.72)),
        bg_seed=int(rng.integers(2**31)),
    )


def _random_colour(rng: np.random.Generator) -> RGB:
    names = list(TOP_WEIGHTS)
    return tuple(int(v) for v in np.clip(np.array(COLOURS[names[int(rng.integers(len(names)))]]) +
                                          rng.integers(-20, 21, 3), 0, 255))  # fmt: skip


@lru_cache(maxsize=16)
def background_panorama(cam: Camera, height: int, width: int) -> np.ndarray:
    """The camera's background, ``(height, PANORAMA_WIDTHS * width, 3)`` uint8 at canvas resolution.

    Wall with a vertical colour gradient and clutter (windows, doors, posters, pillars, plants), a floor
    below ``cam.horizon`` with perspective lines, then low-frequency and fine texture noise.
    """
    rng = np.random.default_rng(cam.bg_seed)
    W = PANORAMA_WIDTHS * width
    hz = int(cam.horizon * height)
    img = Image.new("RGB", (W, height))
    d = ImageDraw.Draw(img)
    top, bottom = np.array(_random_colour(rng)) * 0.6 + 90, np.array(_random_colour(rng)) * 0.5 + 80
    for y in range(hz):
        d.line([(0, y), (W, y)], fill=tuple(int(v) for v in top + (bottom - top) * y / max(hz, 1)))
    floor = np.array(_random_colour(rng)) * 0.4 + rng.uniform(70, 130)
    for y in range(hz, height):
        f = 0.75 + 0.35 * (y - hz) / max(height - hz, 1)
        d.line([(0, y), (W, y)], fill=tuple(int(min(255, v * f)) for v in floor))
    line_c = tuple(int(v * 0.75) for v in floor)
    for k in range(1, 7):
        y = hz + (height - hz) * (k / 7) ** 2
        d.line([(0, y), (W, y)], fill=line_c, width=max(1, height // 120))
    step = width * rng.uniform(0.4, 0.9)
    for xb in np.arange(-W, 2 * W, step):
        vp = (xb // W) * W + W / 2
        d.line([(xb, height), (vp + (xb - vp) * 0.25, hz)], fill=line_c, width=max(1, height // 120))
    x = rng.uniform(0, width * 0.5)
    while x < W:
        kind = rng.choice(["window", "door", "poster", "pillar", "plant", "sign"])
        w = width * rng.uniform(0.3, 0.9)
        c = _random_colour(rng)
        if kind == "window":
            y0 = hz * rng.uniform(0.05, 0.35)
            d.rectangle([x, y0, x + w, y0 + hz * 0.4], fill=shade(c, 0.5), outline=(40, 40, 40), width=2)
            d.rectangle([x + 3, y0 + 3, x + w - 3, y0 + hz * 0.4 - 3], fill=tuple(int(v) for v in rng.integers(120, 210, 3)))
        elif kind == "door":
            d.rectangle([x, hz * rng.uniform(0.2, 0.4), x + w * 0.8, hz], fill=shade(c, 0.7))
        elif kind == "poster":
            y0 = hz * rng.uniform(0.1, 0.5)
            d.rectangle([x, y0, x + w * 0.6, y0 + hz * 0.35], fill=c)
            d.rectangle([x + w * 0.1, y0 + hz * 0.1, x + w * 0.5, y0 + hz * 0.2], fill=_random_colour(rng))
        elif kind == "pillar":
            d.rectangle([x, 0, x + w * 0.35, hz + 2], fill=shade(c, 0.8))
        elif kind == "plant":
            cy = hz - height * 0.08
            d.rectangle([x + w * 0.35, cy, x + w * 0.65, hz + height * 0.05], fill=(90, 60, 40))
            d.ellipse([x, cy - height * 0.25, x + w, cy + height * 0.02], fill=(40, int(rng.integers(80, 140)), 45))
        else:
            d.rectangle([x, hz * 0.05, x + w * 1.5, hz * 0.18], fill=c)
        x += w * rng.uniform(1.0, 2.5)
    arr = np.asarray(img, dtype=np.float32)
    low = rng.normal(1.0, 0.08, size=(max(2, height // 24), max(2, W // 24))).astype(np.float32)
    low_img = Image.fromarray(low).resize((W, height), Image.BILINEAR)
    arr *= np.asarray(low_img, dtype=np.float32)[..., None]
    arr += rng.normal(0.0, 4.0, size=arr.shape).astype(np.float32)
    return arr.clip(0, 255).astype(np.uint8)


def _photometric(arr: np.ndarray, cam: Camera, brightness: float, ramp: np.ndarray) -> np.ndarray:
    """Camera colour transform on ``(H, W, 3)`` float in 0..1: saturation, gains, ramp, haze, gamma."""
    grey = arr.mean(axis=2, keepdims=True)
    arr = grey + cam.saturation * (arr - grey)
    arr = arr * (np.asarray(cam.gains, dtype=np.float32) * brightness) * ramp
    arr = arr + cam.haze * (np.asarray(cam.haze_colour, dtype=np.float32) / 255.0 - arr)
    return np.clip(arr, 0.0, 1.0) ** cam.gamma


def render_tracklet(ident: Identity, cam: Camera, plan: TrackPlan, size: tuple[int, int]) -> list[Image.Image]:
    """Render the ``plan.length`` frames of one tracklet as RGB images of ``size = (height, width)``.

    Per frame: background crop (scrolling at ``plan.speed``), the person at gait phase
    ``phase0 + 2*pi*t/cadence`` with smoothed detector jitter of position and size, the occluder, then
    2x box-downsampling, the camera colour transform with per-frame flicker, Gaussian blur and noise.

    Raises:
        ValueError: for a size below 16 x 8 pixels or a non-positive length.
    """
    h, w = int(size[0]), int(size[1])
    if h < 16 or w < 8 or plan.length < 1:
        raise ValueError(f"render_tracklet: size {size} must be at least (16, 8) and length {plan.length} >= 1")
    rng = np.random.default_rng(list(plan.rng_key))
    S = SUPERSAMPLE
    Hc, Wc = h * S, w * S
    pano = background_panorama(cam, Hc, Wc)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = (1.0 + cam.ramp[0] * (xx / w - 0.5) + cam.ramp[1] * (yy / h - 0.5))[..., None]
    mirror = -1.0 if plan.view == "left" else 1.0
    jx = jy = js = 0.0
    frames = []
    for t in range(plan.length):
        jx = 0.7 * jx + rng.normal(0.0, 0.012)
        jy = 0.7 * jy + rng.normal(0.0, 0.008)
        js = 0.7 * js + rng.normal(0.0, 0.01)
        shift = (plan.bg_start + plan.speed * t) * Wc
        x0 = int(round(shift)) % (pano.shape[1] - Wc)
        canvas = Image.fromarray(pano[:, x0 : x0 + Wc])
        grow = 1.0 + plan.approach * t / max(plan.length - 1, 1)
        height_px = cam.scale * ident.height * plan.scale * grow * (1.0 + js) * Hc
        foot = Hc / 2 + height_px / 2 + jy * Hc
        cx = Wc / 2 + (plan.x_offset + jx) * Wc
        phase = plan.phase0 + 2 * math.pi * t / plan.cadence
        draw_person(Painter(canvas, cx, foot, cam.aspect * mirror), ident, plan.view, height_px, phase)
        if plan.occluder is not None:
            _draw_occluder(canvas, plan.occluder, cam, plan, t, Hc, Wc, height_px, foot)
        small = canvas.reduce(S)
        arr = np.asarray(small, dtype=np.float32) / 255.0
        arr = _photometric(arr, cam, plan.brightness * (1.0 + rng.normal(0.0, 0.02)), ramp)
        img = Image.fromarray((arr * 255.0 + 0.5).astype(np.uint8))
        if cam.blur > 0:
            img = img.filter(ImageFilter.GaussianBlur(cam.blur))
        noisy = np.asarray(img, dtype=np.float32) + rng.normal(0.0, cam.noise, size=(h, w, 3)).astype(np.float32)
        frames.append(Image.fromarray((noisy + 0.5).clip(0, 255).astype(np.uint8)))
    return frames


def _draw_occluder(canvas, occ: Occluder, cam: Camera, plan: TrackPlan, t: int, Hc, Wc, height_px, foot) -> None:
    d = ImageDraw.Draw(canvas)
    if occ.kind == "passerby":
        assert occ.identity is not None
        view = "right" if occ.speed > 0 else "left"  # crossing the crop sideways, whatever the camera axis
        cx = (occ.x + occ.speed * t) * Wc
        pt = Painter(canvas, cx, foot + 0.04 * Hc, cam.aspect * (-1.0 if view == "left" else 1.0))
        draw_person(pt, occ.identity, view, height_px * occ.height, plan.phase0 + 1.0 + 2 * math.pi * t / 11.0)
        return
    x = (occ.x - plan.speed * t) * Wc
    if occ.kind == "pole":
        half = occ.width * Wc / 2
        d.rectangle([x - half, 0, x + half, Hc], fill=occ.colour)
        d.rectangle([x - half * 0.5, 0, x - half * 0.1, Hc], fill=shade(occ.colour, 1.25))
    elif occ.kind == "box":
        y0 = Hc * (1 - occ.height)
        d.rounded_rectangle([x, y0, x + occ.width * Wc, Hc + 5], radius=Hc * 0.03, fill=occ.colour)
        d.rectangle([x, y0, x + occ.width * Wc, y0 + Hc * 0.03], fill=shade(occ.colour, 0.7))
    else:
        raise ValueError(f"occluder kind {occ.kind!r}: expected pole, box or passerby")
