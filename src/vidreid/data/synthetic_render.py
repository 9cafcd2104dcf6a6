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
PANORAMA_WIDTHS = 12  # background panorama width, in crop widths
# Difficulty knobs, tuned so that colour histograms are confounded by the cameras (raw rank-1 near chance,
# grey-world-normalised rank-1 about 25%) while the person stays the dominant part of the crop:
CAST_STRENGTH = 0.4  # fraction of each illuminant's deviation from neutral (gains, saturation, gamma, haze)
BG_BASE_MIX = 0.15  # weight of the camera's own wall/floor colour in each background segment (rest: random)
BG_SATURATION = 0.5  # upper bound of the palette tint of background colours (rest: grey)
SCALE_LO = 0.86  # smallest camera person scale (person height / crop height; largest 0.94)
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
    k = CAST_STRENGTH
    return Camera(
        index=index,
        axis=axis,
        main_view=views[int(rng.integers(2))],
        gains=tuple(float(g) for g in np.round(1 + k * (base * rng.uniform(0.94, 1.06, 3) - 1), 3)),
        saturation=float(1 + k * (rng.uniform(0.45, 1.2) - 1)),
        gamma=float(1 + k * (rng.uniform(0.75, 1.35) - 1)),
        haze=float(k * rng.uniform(0.0, 0.25)),
        haze_colour=tuple(int(v) for v in rng.integers(120, 230, 3)),
        scale=float(rng.uniform(SCALE_LO, 0.94)),
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


def _muted_colour(rng: np.random.Generator, lo: float = 80, hi: float = 200) -> np.ndarray:
    """A background colour: a grey level in ``[lo, hi]`` plus a weak (<= ``BG_SATURATION``) palette tint."""
    c = np.array(_random_colour(rng), dtype=np.float32)
    return np.clip(rng.uniform(lo, hi) + rng.uniform(0.1, BG_SATURATION) * (c - c.mean()), 0, 255)


@lru_cache(maxsize=16)
def background_panorama(cam: Camera, height: int, width: int) -> np.ndarray:
    """The camera's background, ``(height, PANORAMA_WIDTHS * width, 3)`` uint8 at canvas resolution.

    Wall with a vertical colour gradient and clutter (windows, doors, posters, pillars, plants), a floor
    below ``cam.horizon`` with perspective lines, then low-frequency and fine texture noise.
    """
    rng = np.random.default_rng(cam.bg_seed)
    W = PANORAMA_WIDTHS * width
    hz = int(cam.horizon * height)
    base, floor_base = _muted_colour(rng), _muted_colour(rng, 60, 160)
    arr = np.empty((height, W, 3), dtype=np.float32)
    wall_frac = (np.arange(hz, dtype=np.float32) / max(hz, 1))[:, None, None]
    floor_frac = (0.75 + 0.35 * np.arange(height - hz, dtype=np.float32) / max(height - hz, 1))[:, None, None]
    x = 0
    while x < W:  # scene segments: wall gradient and floor, the camera's base colours mixed with random ones
        seg = int(width * rng.uniform(0.8, 2.0))
        top = BG_BASE_MIX * base + (1 - BG_BASE_MIX) * _muted_colour(rng)
        bottom = 0.85 * (BG_BASE_MIX * base + (1 - BG_BASE_MIX) * _muted_colour(rng))
        arr[:hz, x : x + seg] = top + (bottom - top) * wall_frac
        floor = BG_BASE_MIX * floor_base + (1 - BG_BASE_MIX) * _muted_colour(rng, 60, 160)
        arr[hz:, x : x + seg] = np.clip(floor * floor_frac, 0, 255)
        x += seg
    img = Image.fromarray(arr.astype(np.uint8))
    d = ImageDraw.Draw(img)
    line_c = tuple(int(v * 0.6) for v in floor_base)
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
            d.rectangle(
                [x + 3, y0 + 3, x + w - 3, y0 + hz * 0.4 - 3], fill=tuple(int(v) for v in rng.integers(120, 210, 3))
            )
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


def _photometric_maps(cam: Camera, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-pixel gain ``(h, w, 3)`` (channel gains x lighting ramp x (1 - haze)), the haze offset ``(3,)``
    in 0..255 units, and the uint8 gamma lookup table ``(256,)`` of ``cam``."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = 1.0 + cam.ramp[0] * (xx / w - 0.5) + cam.ramp[1] * (yy / h - 0.5)
    gain = ramp[..., None] * np.asarray(cam.gains, dtype=np.float32) * (1.0 - cam.haze)
    offset = cam.haze * np.asarray(cam.haze_colour, dtype=np.float32)
    lut = np.round(255.0 * (np.arange(256) / 255.0) ** cam.gamma).astype(np.uint8)
    return gain.astype(np.float32), offset, lut


def render_tracklet(ident: Identity, cam: Camera, plan: TrackPlan, size: tuple[int, int]) -> list[Image.Image]:
    """Render the ``plan.length`` frames of one tracklet as RGB images of ``size = (height, width)``.

    Per frame: background crop (scrolling at ``plan.speed``), the person at gait phase
    ``phase0 + 2*pi*t/cadence`` with smoothed detector jitter of position and size, the occluder, then
    2x box-downsampling, the camera colour transform with per-frame flicker (saturation, gains x lighting
    ramp, haze, gamma), Gaussian blur and noise.

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
    gain, offset, lut = _photometric_maps(cam, h, w)
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
        arr = np.asarray(canvas.reduce(S), dtype=np.float32)
        grey = arr.mean(axis=2, keepdims=True)
        arr = (grey + cam.saturation * (arr - grey)) * (gain * (plan.brightness * (1.0 + rng.normal(0.0, 0.02))))
        img = Image.fromarray(lut[np.clip(arr + offset, 0, 255).astype(np.uint8)])
        if cam.blur > 0:
            img = img.filter(ImageFilter.GaussianBlur(cam.blur))
        noisy = np.asarray(img, dtype=np.float32) + cam.noise * rng.standard_normal((h, w, 3), dtype=np.float32)
        frames.append(Image.fromarray(np.clip(noisy + 0.5, 0, 255).astype(np.uint8)))
    return frames


def _draw_occluder(canvas, occ: Occluder, cam: Camera, plan: TrackPlan, t: int, Hc, Wc, height_px, foot) -> None:
    d = ImageDraw.Draw(canvas)
    if occ.kind == "passerby":
        if occ.identity is None:
            raise ValueError("a passerby occluder needs an identity")
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


def contact_sheet(root, manifest: dict, out, num_ids: int = 8, per_id: int = 8) -> Image.Image:
    """Save (and return) a PNG grid: one row per test identity (the first ``num_ids``; last row: distractors),
    the first frame of up to ``per_id`` of its tracklets per row, labelled ``C<cam>``/view by position."""
    from pathlib import Path

    root = Path(root)
    h, w = manifest["params"]["image_size"]
    rows: dict[int, list[dict]] = {}
    for t in manifest["tracklets"]:
        if t["subset"] != "train":
            rows.setdefault(t["pid"], []).append(t)
    pids = sorted(p for p in rows if p > 0)[:num_ids] + ([0] if 0 in rows else [])
    sheet = Image.new("RGB", (per_id * (w + 2), len(pids) * (h + 2)), (255, 255, 255))
    for r, pid in enumerate(pids):
        for c, t in enumerate(sorted(rows[pid], key=lambda t: t["camid"])[:per_id]):
            with Image.open(root / t["dir"] / "F000.jpg") as im:
                sheet.paste(im.convert("RGB"), (c * (w + 2), r * (h + 2)))
    sheet.save(out)
    return sheet
