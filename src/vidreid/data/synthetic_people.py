"""Procedural walking people for the synthetic video re-ID set: identity attributes and drawing.

An :class:`Identity` holds what makes a person recognisable: clothing colours and patterns, shoes, hair,
a carried bag (kind, colour, side), a print on the back, and body proportions and gait. :func:`draw_person`
draws one walking pose of it with PIL onto a canvas, seen from the front, the back, or the side
(walking right or left). Nothing here is random except :func:`sample_identity`, which draws from the
``numpy.random.Generator`` it is given, so the caller controls determinism.

The camera, background, occluders and the frame/tracklet loop are in :mod:`vidreid.data.synthetic_render`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

RGB = tuple[int, int, int]

COLOURS: dict[str, RGB] = {
    "black": (28, 28, 30), "charcoal": (62, 62, 66), "grey": (128, 128, 126), "white": (228, 228, 222),
    "navy": (28, 38, 88), "blue": (38, 82, 172), "sky": (122, 170, 222), "denim": (70, 96, 136),
    "red": (172, 32, 36), "maroon": (98, 26, 38), "orange": (224, 114, 34), "yellow": (222, 194, 52),
    "green": (42, 114, 54), "olive": (102, 106, 52), "teal": (28, 122, 124), "pink": (226, 136, 168),
    "purple": (98, 52, 134), "brown": (108, 70, 40), "beige": (206, 186, 144), "khaki": (170, 152, 102),
}  # fmt: skip
# Relative frequencies: dark and neutral clothes are common (as in real surveillance footage).
TOP_WEIGHTS = {"black": 4, "charcoal": 2, "grey": 3, "white": 3, "navy": 2, "blue": 2, "sky": 1, "denim": 1, "red": 2,
               "maroon": 1, "orange": 1, "yellow": 1, "green": 1.5, "olive": 1, "teal": 1, "pink": 1, "purple": 1,
               "brown": 1, "beige": 1.5, "khaki": 1}  # fmt: skip
LOWER_WEIGHTS = {"black": 5, "charcoal": 2, "grey": 2, "denim": 5, "navy": 2, "blue": 1, "khaki": 2, "beige": 1.5,
                 "brown": 1.5, "white": 0.7, "olive": 1, "red": 0.4, "maroon": 0.5, "green": 0.4}  # fmt: skip
SHOE_WEIGHTS = {"black": 5, "white": 4, "brown": 2, "grey": 1.5, "red": 0.5, "blue": 0.5, "beige": 1}
HAIR = [(20, 16, 14), (46, 30, 20), (92, 60, 32), (150, 110, 60), (200, 170, 110), (120, 118, 114), (130, 40, 20)]
SKIN = [(238, 204, 178), (224, 180, 146), (196, 146, 108), (160, 108, 72), (112, 74, 50), (80, 54, 38)]
PATTERNS = ("plain", "hstripes", "vstripes", "checks", "colorblock")
BAGS = ("none", "backpack", "shoulder", "handbag")
VIEWS = ("front", "back", "right", "left")


@dataclass(frozen=True)
class Identity:
    """Appearance and body of one synthetic person. Colours are sRGB ``(r, g, b)`` in 0..255.

    ``bag_side`` is the person's own side (+1 right, -1 left): seen from the front it appears on the
    image left, from the back on the image right. Proportions are relative: ``height`` scales the
    camera's person height, ``width`` the body width, ``leg`` is hip height / body height, ``head`` scales the
    head radius. ``stride`` is the thigh swing amplitude (rad); ``cadence`` the gait cycle (frames).
    """

    shirt: RGB
    pattern: str
    accent: RGB
    stripe: float
    sleeves: str
    lower: RGB
    lower_style: str
    shoes: RGB
    skin: RGB
    hair: RGB
    hair_style: str
    hat: RGB
    bag: str
    bag_colour: RGB
    bag_side: int
    back_print: str
    print_colour: RGB
    height: float
    width: float
    leg: float
    head: float
    stride: float
    cadence: float


def _pick(rng: np.random.Generator, weights: dict[str, float], jitter: int = 12) -> RGB:
    names = list(weights)
    p = np.array([weights[n] for n in names], dtype=float)
    base = np.array(COLOURS[names[int(rng.choice(len(names), p=p / p.sum()))]])
    return _jitter(rng, base, jitter)


def _jitter(rng: np.random.Generator, colour, amount: int) -> RGB:
    c = np.asarray(colour) + rng.integers(-amount, amount + 1, size=3)
    return tuple(int(v) for v in np.clip(c, 0, 255))


def sample_identity(rng: np.random.Generator, like: Identity | None = None) -> Identity:
    """Draw a random identity; with ``like``, a look-alike sharing its shirt and trousers colours.

    A look-alike redraws everything else and is forced to differ in shirt pattern or carried bag, so that
    colour alone does not separate the pair (the hard negatives of the synthetic set).
    """
    pattern = PATTERNS[int(rng.choice(len(PATTERNS), p=[0.45, 0.18, 0.1, 0.12, 0.15]))]
    bag = BAGS[int(rng.choice(len(BAGS), p=[0.4, 0.25, 0.2, 0.15]))]
    ident = Identity(
        shirt=_pick(rng, TOP_WEIGHTS),
        pattern=pattern,
        accent=_pick(rng, TOP_WEIGHTS),
        stripe=float(rng.uniform(0.025, 0.06)),
        sleeves="long" if rng.random() < 0.55 else "short",
        lower=_pick(rng, LOWER_WEIGHTS),
        lower_style=str(rng.choice(["trousers", "shorts", "skirt"], p=[0.72, 0.16, 0.12])),
        shoes=_pick(rng, SHOE_WEIGHTS, 10),
        skin=_jitter(rng, SKIN[int(rng.integers(len(SKIN)))], 8),
        hair=_jitter(rng, HAIR[int(rng.integers(len(HAIR)))], 8),
        hair_style=str(rng.choice(["short", "long", "cap"], p=[0.55, 0.3, 0.15])),
        hat=_pick(rng, TOP_WEIGHTS),
        bag=bag,
        bag_colour=_pick(rng, TOP_WEIGHTS),
        bag_side=1 if rng.random() < 0.5 else -1,
        back_print=str(rng.choice(["none", "circle", "square", "diamond"], p=[0.55, 0.15, 0.15, 0.15])),
        print_colour=_pick(rng, TOP_WEIGHTS),
        height=float(rng.uniform(0.86, 1.0)),
        width=float(rng.uniform(0.85, 1.3)),
        leg=float(rng.uniform(0.44, 0.53)),
        head=float(rng.uniform(0.85, 1.2)),
        stride=float(rng.uniform(0.3, 0.55)),
        cadence=float(rng.uniform(9.0, 14.0)),
    )
    if like is None:
        return ident
    ident = replace(ident, shirt=_jitter(rng, like.shirt, 5), lower=_jitter(rng, like.lower, 5))
    if ident.pattern == like.pattern and ident.bag == like.bag:
        if rng.random() < 0.5:
            ident = replace(ident, pattern=PATTERNS[(PATTERNS.index(like.pattern) + int(rng.integers(1, 5))) % 5])
        else:
            ident = replace(ident, bag=BAGS[(BAGS.index(like.bag) + int(rng.integers(1, 4))) % 4])
    return ident


def shade(colour: RGB, f: float) -> RGB:
    """``colour`` multiplied by ``f`` (clipped to 0..255)."""
    return tuple(int(min(255, max(0, round(c * f)))) for c in colour)


class Painter:
    """Maps person-local coordinates to canvas pixels and draws primitives.

    Local coordinates: ``u`` is horizontal (towards the image right for front/back views, towards the
    walking direction for side views), ``h`` is the height above the ground, both in canvas pixels.
    ``sx`` is the horizontal scale: the camera aspect, negated to mirror a person walking left.
    """

    def __init__(self, canvas: Image.Image, cx: float, yf: float, sx: float):
        self.canvas, self.draw = canvas, ImageDraw.Draw(canvas)
        self.cx, self.yf, self.sx = cx, yf, sx

    def p(self, u: float, h: float) -> tuple[float, float]:
        return (self.cx + self.sx * u, self.yf - h)

    def box(self, u0: float, h0: float, u1: float, h1: float) -> list[float]:
        (x0, y0), (x1, y1) = self.p(u0, h0), self.p(u1, h1)
        return [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]

    def limb(self, a, b, width: float, colour: RGB) -> None:
        pa, pb = self.p(*a), self.p(*b)
        self.draw.line([pa, pb], fill=colour, width=max(1, round(width)))
        r = width / 2
        for x, y in (pa, pb):
            self.draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)

    def ellipse(self, u: float, h: float, ru: float, rh: float, colour: RGB) -> None:
        self.draw.ellipse(self.box(u - ru, h - rh, u + ru, h + rh), fill=colour)

    def rect(self, u0: float, h0: float, u1: float, h1: float, colour: RGB, radius: float = 0.0) -> None:
        self.draw.rounded_rectangle(self.box(u0, h0, u1, h1), radius=max(0.0, radius), fill=colour)

    def patterned(self, pts: list[tuple[float, float]], ident: Identity, scale: float, print_: bool = False) -> None:
        """Fill the polygon ``pts`` (local coordinates) with the shirt pattern and cylinder shading."""
        xy = [self.p(u, h) for u, h in pts]
        x0, y0 = int(math.floor(min(x for x, _ in xy))), int(math.floor(min(y for _, y in xy)))
        x1, y1 = int(math.ceil(max(x for x, _ in xy))), int(math.ceil(max(y for _, y in xy)))
        bw, bh = max(1, x1 - x0), max(1, y1 - y0)
        yy, xx = np.mgrid[0:bh, 0:bw]
        period = max(2, int(round(ident.stripe * scale)))
        img = np.empty((bh, bw, 3), dtype=np.float32)
        img[:] = ident.shirt
        alt = {
            "plain": None,
            "hstripes": (yy // period) % 2 == 1,
            "vstripes": (xx // period) % 2 == 1,
            "checks": ((yy // period) + (xx // period)) % 2 == 1,
            "colorblock": yy < 0.42 * bh,
        }[ident.pattern]
        if alt is not None:
            img[alt] = ident.accent
        if print_ and ident.back_print != "none":
            cy, cx, r = 0.4 * bh, 0.5 * bw, 0.22 * min(bw, bh * 0.8)
            d = {"circle": np.hypot(yy - cy, xx - cx), "square": np.maximum(abs(yy - cy), abs(xx - cx)),
                 "diamond": abs(yy - cy) + abs(xx - cx) * 0.8}[ident.back_print]  # fmt: skip
            img[d < r] = ident.print_colour
        img *= (1.0 - 0.28 * ((xx + 0.5) / bw * 2 - 1) ** 2)[..., None]
        mask = Image.new("L", (bw, bh), 0)
        ImageDraw.Draw(mask).polygon([(x - x0, y - y0) for x, y in xy], fill=255)
        self.canvas.paste(Image.fromarray(img.clip(0, 255).astype(np.uint8)), (x0, y0), mask)


def draw_person(painter: Painter, ident: Identity, view: str, height_px: float, phase: float) -> None:
    """Draw ``ident`` walking, feet at the painter's origin, ``height_px`` tall, at gait ``phase`` (rad).

    Side views ("right"/"left") swing thighs by ``±stride·sin(phase)`` with knee flexion in the swing
    phase and counter-swinging arms; front/back views lift the swinging foot and foreshorten the arms.
    The hip height is set so that the lowest foot touches the ground, which gives the vertical bobbing.

    Raises:
        ValueError: if ``view`` is not one of ``front``, ``back``, ``right``, ``left``.
    """
    if view not in VIEWS:
        raise ValueError(f"view {view!r}: expected one of {VIEWS}")
    H = height_px
    hr = 0.066 * ident.head * H
    wf = ident.width
    lw, aw = 0.115 * H * wf**0.7, 0.072 * H * wf**0.7
    hs = H - 2.3 * hr  # shoulder height
    la = 0.37 * H
    if view in ("right", "left"):
        _draw_side(painter, ident, H, hr, wf, lw, aw, hs, la, phase, near=-1 if view == "right" else 1)
    else:
        _draw_frontal(painter, ident, H, hr, wf, lw, aw, hs, la, phase, front=view == "front")


def _legs_side(ident: Identity, H: float, phase: float) -> tuple[float, list]:
    """Hip height and ``[(knee, ankle)]`` for the near (phase) and far (phase + pi) legs, relative to the hip."""
    seg = ident.leg * H / 2
    legs = []
    for ph in (phase, phase + math.pi):
        a = ident.stride * math.sin(ph)
        k = 1.6 * ident.stride * max(0.0, math.cos(ph))
        knee = (seg * math.sin(a), -seg * math.cos(a))
        ankle = (knee[0] + seg * math.sin(a - k), knee[1] - seg * math.cos(a - k))
        legs.append((knee, ankle))
    hip_h = max(-ankle[1] for _, ankle in legs) + 0.02 * H
    return hip_h, legs


def _draw_leg_side(pt: Painter, ident: Identity, hip, knee, ankle, lw: float, H: float, f: float) -> None:
    lower, skin = shade(ident.lower, f), shade(ident.skin, f)
    shin_colour = lower if ident.lower_style == "trousers" else skin
    thigh_colour = skin if ident.lower_style == "skirt" else lower
    pt.limb(knee, ankle, lw * 0.85, shin_colour)
    pt.limb(hip, knee, lw, thigh_colour)
    pt.limb((ankle[0] - 0.015 * H, ankle[1]), (ankle[0] + 0.06 * H, ankle[1] - 0.005 * H), 0.035 * H,
            shade(ident.shoes, f))  # fmt: skip


def _arm(pt, ident, shoulder, elbow, hand, aw, f) -> None:
    shirt, skin = shade(ident.shirt, f), shade(ident.skin, f)
    if ident.sleeves == "long":
        pt.limb(elbow, hand, aw * 0.85, shirt)
    else:
        pt.limb(elbow, hand, aw * 0.8, skin)
    pt.limb(shoulder, elbow, aw, shirt)
    pt.ellipse(hand[0], hand[1], aw * 0.5, aw * 0.55, skin)


def _draw_side(pt: Painter, ident: Identity, H, hr, wf, lw, aw, hs, la, phase, near: int) -> None:
    td = 0.2 * H * wf
    hip_h, legs = _legs_side(ident, H, phase)
    hip = (0.0, hip_h)
    hs = hip_h + (H * (1 - ident.leg) - 2.3 * hr)  # keep the torso attached to the bobbing hip
    top = hs + 2.3 * hr
    arms = []
    for ph in (phase + math.pi, phase):  # the near arm swings against the near leg
        b = 0.8 * ident.stride * math.sin(ph)
        shoulder = (0.0, hs - 0.25 * hr)
        elbow = (shoulder[0] + la / 2 * math.sin(b), shoulder[1] - la / 2 * math.cos(b))
        c = b + 0.3 + 0.4 * max(0.0, math.sin(ph))
        hand = (elbow[0] + la / 2 * math.sin(c), elbow[1] - la / 2 * math.cos(c))
        arms.append((shoulder, elbow, hand))
    near_arm, far_arm = arms
    bag_near = ident.bag_side == near
    # far side: arm, leg, bag
    _arm(pt, ident, *far_arm, aw, 0.78)
    knee, ankle = legs[1]
    _draw_leg_side(pt, ident, hip, (knee[0], hip_h + knee[1]), (ankle[0], hip_h + ankle[1]), lw, H, 0.78)
    if ident.bag == "shoulder" and not bag_near:
        pt.rect(-0.08 * H, hip_h - 0.05 * H, 0.03 * H, hip_h + 0.08 * H, shade(ident.bag_colour, 0.78), 0.01 * H)
    if ident.bag == "handbag" and not bag_near:
        u, h = far_arm[2]
        pt.rect(u - 0.04 * H, h - 0.1 * H, u + 0.04 * H, h - 0.01 * H, shade(ident.bag_colour, 0.78), 0.01 * H)
    if ident.hair_style == "long":
        pt.rect(-0.95 * hr, hs - 0.1 * H, -0.05 * hr, top - hr, ident.hair)
    # body
    pt.rect(-td / 2, hip_h - 0.06 * H, td / 2, hip_h + 0.04 * H, ident.lower, 0.3 * td)
    pt.rect(-0.3 * hr, hs - 0.02 * H, 0.3 * hr, top - 1.5 * hr, ident.skin)
    pt.patterned([(-td / 2, hs), (td / 2, hs), (td / 2 * 0.92, hip_h - 0.02 * H), (-td / 2 * 0.92, hip_h - 0.02 * H)],
                 ident, H)  # fmt: skip
    if ident.bag == "backpack":
        pt.rect(-td / 2 - 0.09 * H, hs - 0.3 * H, -td / 2 + 0.01 * H, hs - 0.02 * H, ident.bag_colour, 0.02 * H)
        pt.limb((-td / 2, hs - 0.01 * H), (0.1 * td, hs - 0.2 * H), 0.018 * H, shade(ident.bag_colour, 0.8))
    if ident.lower_style == "skirt":
        pt.draw.polygon([pt.p(-td / 2, hip_h + 0.03 * H), pt.p(td / 2, hip_h + 0.03 * H),
                         pt.p(td * 0.85, 0.55 * hip_h), pt.p(-td * 0.85, 0.55 * hip_h)], fill=ident.lower)  # fmt: skip
    knee, ankle = legs[0]
    _draw_leg_side(pt, ident, hip, (knee[0], hip_h + knee[1]), (ankle[0], hip_h + ankle[1]), lw, H, 1.0)
    # head
    _head(pt, ident, hr, top, "side")
    if ident.bag == "shoulder" and bag_near:
        pt.limb((-0.2 * td, hs), (0.3 * td, hip_h + 0.08 * H), 0.015 * H, shade(ident.bag_colour, 0.85))
        pt.rect(-0.05 * H, hip_h - 0.06 * H, 0.06 * H, hip_h + 0.08 * H, ident.bag_colour, 0.01 * H)
    _arm(pt, ident, *near_arm, aw, 1.0)
    if ident.bag == "handbag" and bag_near:
        u, h = near_arm[2]
        pt.rect(u - 0.04 * H, h - 0.1 * H, u + 0.04 * H, h - 0.01 * H, ident.bag_colour, 0.01 * H)


def _head(pt: Painter, ident: Identity, hr: float, top: float, kind: str) -> None:
    hc = top - hr
    if kind == "side":
        pt.ellipse(-0.12 * hr, hc + 0.05 * hr, 0.92 * hr, 1.02 * hr, ident.hair)
        pt.ellipse(0.18 * hr, hc - 0.12 * hr, 0.72 * hr, 0.85 * hr, ident.skin)
    elif kind == "front":
        pt.ellipse(0.0, hc + 0.05 * hr, 0.9 * hr, 1.02 * hr, ident.hair)
        pt.ellipse(0.0, hc - 0.14 * hr, 0.76 * hr, 0.86 * hr, ident.skin)
    else:
        pt.ellipse(0.0, hc, 0.88 * hr, 1.02 * hr, ident.hair)
    if ident.hair_style == "cap":
        pt.draw.chord(pt.box(-0.95 * hr, hc - 0.15 * hr, 0.95 * hr, top + 0.1 * hr), 180, 360, fill=ident.hat)
        if kind == "side":
            pt.rect(0.3 * hr, hc - 0.05 * hr, 1.4 * hr, hc + 0.12 * hr, ident.hat)
        elif kind == "front":
            pt.rect(-0.9 * hr, hc - 0.05 * hr, 0.9 * hr, hc + 0.15 * hr, shade(ident.hat, 0.8))


def _draw_frontal(pt: Painter, ident: Identity, H, hr, wf, lw, aw, hs, la, phase, front: bool) -> None:
    tw = 0.31 * H * wf
    L = ident.leg * H
    lift = [0.07 * L * max(0.0, math.sin(phase + i * math.pi)) for i in (0, 1)]
    bob = 0.012 * H * (1 - math.cos(2 * phase)) / 2
    hip_h, hs = L + bob, hs + bob
    top = hs + 2.3 * hr
    side = -ident.bag_side if front else ident.bag_side  # image side of the bag
    if ident.hair_style == "long" and front:
        pt.rect(-0.95 * hr, hs - 0.06 * H, 0.95 * hr, top - hr, ident.hair)
    # legs
    for i, s in enumerate((-1, 1)):
        u_hip, u_foot, foot_h = s * 0.22 * tw, s * 0.2 * tw, lift[i]
        knee_h = (hip_h + foot_h) / 2
        if ident.lower_style == "trousers":
            pt.limb((u_hip, hip_h), (u_foot, foot_h + 0.02 * H), lw, ident.lower)
        else:
            pt.limb((u_hip, hip_h), (u_foot, foot_h + 0.02 * H), lw * 0.85, ident.skin)
            if ident.lower_style == "shorts":
                pt.limb((u_hip, hip_h), ((u_hip + u_foot) / 2, knee_h + 0.03 * H), lw, ident.lower)
        pt.ellipse(u_foot, foot_h + 0.018 * H, lw * 0.62, 0.026 * H, ident.shoes)
    pt.rect(-0.45 * tw, hip_h - 0.07 * H, 0.45 * tw, hip_h + 0.03 * H, ident.lower, 0.15 * tw)
    if ident.lower_style == "skirt":
        pt.draw.polygon([pt.p(-0.45 * tw, hip_h + 0.03 * H), pt.p(0.45 * tw, hip_h + 0.03 * H),
                         pt.p(0.62 * tw, 0.55 * hip_h), pt.p(-0.62 * tw, 0.55 * hip_h)], fill=ident.lower)  # fmt: skip
    # torso, bag, arms, head
    pt.rect(-0.3 * hr, hs - 0.02 * H, 0.3 * hr, top - 1.5 * hr, ident.skin)
    pt.patterned([(-tw / 2, hs), (tw / 2, hs), (0.44 * tw, hip_h - 0.03 * H), (-0.44 * tw, hip_h - 0.03 * H)], ident, H,
                 print_=not front)  # fmt: skip
    if ident.bag == "backpack":
        if front:
            for s in (-1, 1):
                pt.limb((s * 0.3 * tw, hs), (s * 0.3 * tw, hs - 0.22 * H), 0.02 * H, ident.bag_colour)
        else:
            pt.rect(-0.36 * tw, hs - 0.3 * H, 0.36 * tw, hs - 0.03 * H, ident.bag_colour, 0.1 * tw)
            pt.rect(-0.24 * tw, hs - 0.28 * H, 0.24 * tw, hs - 0.17 * H, shade(ident.bag_colour, 0.8), 0.05 * tw)
    if ident.bag == "shoulder":
        pt.limb((-side * 0.3 * tw, hs), (side * 0.45 * tw, hip_h + 0.07 * H), 0.015 * H, shade(ident.bag_colour, 0.85))
    hands = []
    for i, s in enumerate((-1, 1)):
        f = 1 - 0.1 * abs(math.sin(phase + (1 - i) * math.pi))
        shoulder = (s * (tw / 2 - 0.1 * aw), hs - 0.2 * hr)
        elbow = (s * (tw / 2 + 0.35 * aw), hs - 0.5 * la * f)
        hand = (s * (tw / 2 + 0.3 * aw), hs - la * f)
        _arm(pt, ident, shoulder, elbow, hand, aw, 1.0)
        hands.append(hand)
    if ident.bag == "shoulder":
        u = side * (tw / 2 + 0.045 * H)
        pt.rect(u - 0.045 * H, hip_h - 0.07 * H, u + 0.045 * H, hip_h + 0.07 * H, ident.bag_colour, 0.01 * H)
    if ident.bag == "handbag":
        u, h = hands[0 if side < 0 else 1]
        pt.rect(u - 0.035 * H, h - 0.1 * H, u + 0.035 * H, h - 0.01 * H, ident.bag_colour, 0.01 * H)
    _head(pt, ident, hr, top, "front" if front else "back")
    if ident.hair_style == "long" and not front:
        pt.rect(-0.9 * hr, hs - 0.08 * H, 0.9 * hr, top - hr, ident.hair, 0.3 * hr)
