"""The demo catalogue's photos: simple shapes drawn with PIL, one drawer per category.

A photo is deterministic for its random generator; backdrops, white borders, noise and the
occasional photo of a neighbouring category make the image side learnable but not trivial.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw

from prodcat.demo.vocabulary import Category, pick

_P_IMAGE_FROM_NEIGHBOUR = 0.04


def _jit(rng: np.random.Generator, rgb, spread: float = 18.0) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + rng.normal(0, spread), 0, 255)) for c in rgb)


def _darker(rgb, factor: float = 0.6) -> tuple[int, int, int]:
    return tuple(int(c * factor) for c in rgb)


def _lighter(rgb, amount: float = 0.5) -> tuple[int, int, int]:
    return tuple(int(c + (255 - c) * amount) for c in rgb)


Box = tuple[float, float, float, float]


def _sub(box: Box, fx0: float, fy0: float, fx1: float, fy1: float) -> list[float]:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    return [x0 + fx0 * w, y0 + fy0 * h, x0 + fx1 * w, y0 + fy1 * h]


def _text_lines(d: ImageDraw.ImageDraw, rng, box: Box, colour, n: int, top: float, bottom: float):
    step = (bottom - top) / max(n, 1)
    for i in range(n):
        y = top + i * step
        right = rng.uniform(0.55, 0.9)
        d.rectangle(_sub(box, 0.15, y, right, y + step * 0.35), fill=colour)


def _draw_book(d, rng, box, bg):
    palette = [(150, 30, 35), (25, 40, 100), (30, 90, 50), (200, 160, 40), (30, 30, 30),
               (235, 225, 200), (20, 120, 130)]
    if rng.random() < 0.3:  # a stack of books seen from the side
        n = int(rng.integers(3, 6))
        for i in range(n):
            colour = _jit(rng, pick(rng, palette))
            dx = rng.uniform(-0.06, 0.06)
            top = 0.1 + i * 0.8 / n
            d.rectangle(_sub(box, 0.1 + dx, top, 0.9 + dx, top + 0.8 / n - 0.02), fill=colour,
                        outline=_darker(colour))
            d.rectangle(_sub(box, 0.3 + dx, top + 0.3 / n, 0.7 + dx, top + 0.45 / n),
                        fill=_lighter(colour, 0.6))
        return
    colour = _jit(rng, pick(rng, palette))
    cover = _sub(box, 0.15, 0.0, 0.85, 1.0)
    d.rectangle(cover, fill=colour, outline=_darker(colour, 0.5))
    d.rectangle(_sub(cover, 0.0, 0.0, 0.08, 1.0), fill=_darker(colour))
    d.rectangle(_sub(cover, 0.12, 0.1, 0.9, 0.3), fill=_lighter(colour, 0.7))
    _text_lines(d, rng, cover, _lighter(colour, 0.8), int(rng.integers(3, 6)), 0.4, 0.8)
    d.rectangle(_sub(cover, 0.25, 0.88, 0.75, 0.92), fill=_lighter(colour, 0.5))


def _draw_magazine(d, rng, box, bg):
    palette = [(240, 60, 130), (250, 220, 40), (40, 200, 230), (230, 40, 40), (250, 250, 250),
               (250, 140, 30)]
    pages = 2 if rng.random() < 0.25 else 1
    for p in range(pages):
        off = 0.08 * (pages - 1 - p)
        colour = _jit(rng, pick(rng, palette), 25)
        cover = _sub(box, 0.12 + off, 0.02 + off * 0.5, 0.82 + off, 0.98 - off * 0.5)
        d.rectangle(cover, fill=colour, outline=(60, 60, 60))
        mast = _jit(rng, pick(rng, [(220, 0, 0), (20, 20, 20), (255, 255, 255)]), 10)
        d.rectangle(_sub(cover, 0.0, 0.0, 1.0, 0.18), fill=mast)
        d.rectangle(_sub(cover, 0.1, 0.04, 0.8, 0.13), fill=colour)
        if rng.random() < 0.6:  # a face
            d.ellipse(_sub(cover, 0.25, 0.28, 0.75, 0.8), fill=_jit(rng, (225, 180, 150)))
            d.ellipse(_sub(cover, 0.2, 0.22, 0.8, 0.5), fill=_jit(rng, (80, 50, 30)))
            d.ellipse(_sub(cover, 0.3, 0.45, 0.7, 0.85), fill=_jit(rng, (225, 180, 150)))
        else:
            d.rectangle(_sub(cover, 0.1, 0.25, 0.9, 0.75), fill=_jit(rng, pick(rng, palette), 40))
        for i in range(int(rng.integers(2, 5))):
            y = 0.8 + i * 0.045
            d.rectangle(_sub(cover, 0.08, y, rng.uniform(0.4, 0.9), y + 0.025),
                        fill=_jit(rng, (30, 30, 30)))


def _draw_game(d, rng, box, bg):
    band = pick(rng, [(0, 60, 160), (220, 0, 20), (16, 124, 16), (240, 240, 240)])
    if rng.random() < 0.25:  # a cartridge
        cart = _sub(box, 0.2, 0.2, 0.8, 0.85)
        d.rounded_rectangle(cart, radius=4, fill=_jit(rng, (120, 120, 125)), outline=(60, 60, 60))
        d.rectangle(_sub(cart, 0.12, 0.12, 0.88, 0.7), fill=_jit(rng, band, 30))
        d.ellipse(_sub(cart, 0.3, 0.25, 0.7, 0.6), fill=_jit(rng, (250, 200, 50), 40))
        return
    case = _sub(box, 0.15, 0.0, 0.85, 1.0)
    d.rectangle(case, fill=_jit(rng, (40, 40, 60), 40), outline=(20, 20, 20))
    d.rectangle(_sub(case, 0.0, 0.0, 1.0, 0.12), fill=_jit(rng, band, 8))
    for _ in range(int(rng.integers(3, 7))):  # cover art
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        x, y = rng.uniform(0.05, 0.7), rng.uniform(0.15, 0.75)
        s = rng.uniform(0.15, 0.4)
        shape = _sub(case, x, y, min(x + s, 0.95), min(y + s, 0.95))
        if rng.random() < 0.5:
            d.ellipse(shape, fill=colour)
        else:
            x0, y0, x1, y1 = shape
            d.polygon([(x0, y1), ((x0 + x1) / 2, y0), (x1, y1)], fill=colour)
    d.rectangle(_sub(case, 0.1, 0.85, 0.6, 0.92), fill=(240, 240, 240))


def _draw_console(d, rng, box, bg):
    body = _jit(rng, (240, 240, 240) if rng.random() < 0.25 else (35, 35, 40), 12)
    kind = rng.random()
    if kind < 0.45:  # a controller
        pad = _sub(box, 0.05, 0.3, 0.95, 0.75)
        d.rounded_rectangle(pad, radius=int((pad[3] - pad[1]) * 0.4), fill=body,
                            outline=_darker(body, 0.5))
        d.ellipse(_sub(box, 0.0, 0.45, 0.35, 0.95), fill=body)
        d.ellipse(_sub(box, 0.65, 0.45, 1.0, 0.95), fill=body)
        cross = (110, 110, 110) if body[0] < 128 else (60, 60, 60)
        d.rectangle(_sub(box, 0.17, 0.46, 0.27, 0.5), fill=cross)
        d.rectangle(_sub(box, 0.2, 0.42, 0.24, 0.55), fill=cross)
        for (fx, fy), colour in zip(((0.72, 0.4), (0.8, 0.46), (0.72, 0.52), (0.64, 0.46)),
                                    ((40, 200, 120), (220, 50, 50), (60, 110, 230), (230, 200, 40)),
                                    strict=True):
            d.ellipse(_sub(box, fx, fy, fx + 0.06, fy + 0.06), fill=colour)
    elif kind < 0.85:  # a console box
        unit = _sub(box, 0.05, 0.35, 0.95, 0.7)
        d.rectangle(unit, fill=body, outline=_darker(body, 0.5))
        d.line(_sub(unit, 0.08, 0.5, 0.7, 0.5), fill=_darker(body, 0.4) if body[0] > 128 else
               (90, 90, 95), width=2)
        d.ellipse(_sub(unit, 0.85, 0.35, 0.9, 0.6), fill=_jit(rng, (60, 140, 255), 20))
    else:  # a handheld
        unit = _sub(box, 0.05, 0.25, 0.95, 0.75)
        d.rounded_rectangle(unit, radius=6, fill=body)
        d.rectangle(_sub(unit, 0.28, 0.12, 0.72, 0.88), fill=_jit(rng, (70, 90, 120), 20))
        d.ellipse(_sub(unit, 0.06, 0.4, 0.18, 0.6), fill=(90, 90, 90))
        d.ellipse(_sub(unit, 0.82, 0.4, 0.94, 0.6), fill=_jit(rng, (220, 50, 50)))


def _draw_pool(d, rng, box, bg):
    kind = rng.random()
    bright = [(230, 40, 40), (250, 250, 250), (250, 210, 30), (40, 170, 230), (250, 120, 180),
              (60, 200, 90)]
    if kind < 0.4:  # a swim ring
        ring = _sub(box, 0.05, 0.05, 0.95, 0.95)
        a, b = _jit(rng, pick(rng, bright)), _jit(rng, pick(rng, bright))
        start = rng.uniform(0, 45)
        for i in range(8):
            d.pieslice(ring, start + i * 45, start + (i + 1) * 45, fill=a if i % 2 else b)
        d.ellipse(_sub(box, 0.33, 0.33, 0.67, 0.67), fill=bg)
    elif kind < 0.7:  # a beach ball
        ball = _sub(box, 0.1, 0.1, 0.9, 0.9)
        start = rng.uniform(0, 60)
        for i in range(6):
            d.pieslice(ball, start + i * 60, start + (i + 1) * 60, fill=_jit(rng, bright[i], 15))
        d.ellipse(_sub(box, 0.44, 0.44, 0.56, 0.56), fill=(250, 250, 250))
    else:  # an inflatable pool
        rim = _jit(rng, (40, 120, 220), 20)
        d.ellipse(_sub(box, 0.0, 0.25, 1.0, 0.85), fill=rim, outline=_darker(rim))
        d.ellipse(_sub(box, 0.1, 0.33, 0.9, 0.77), fill=_jit(rng, (140, 210, 245), 12))


def _draw_plant(d, rng, box, bg):
    pot = _jit(rng, pick(rng, [(190, 100, 60), (190, 100, 60), (240, 240, 235), (90, 90, 95)]))
    x0, y0, x1, y1 = _sub(box, 0.25, 0.6, 0.75, 1.0)
    inset = (x1 - x0) * 0.12
    d.polygon([(x0, y0), (x1, y0), (x1 - inset, y1), (x0 + inset, y1)], fill=pot)
    d.rectangle([x0 - 1, y0, x1 + 1, y0 + (y1 - y0) * 0.15], fill=_darker(pot, 0.85))
    green = (50, 140, 60)
    if rng.random() < 0.2:  # a cactus
        cactus = _jit(rng, (60, 130, 70), 15)
        d.rounded_rectangle(_sub(box, 0.42, 0.1, 0.58, 0.62), radius=6, fill=cactus)
        d.rounded_rectangle(_sub(box, 0.25, 0.28, 0.35, 0.5), radius=4, fill=cactus)
        d.rounded_rectangle(_sub(box, 0.65, 0.2, 0.75, 0.45), radius=4, fill=cactus)
        return
    for _ in range(int(rng.integers(5, 10))):
        cx, cy = rng.uniform(0.2, 0.8), rng.uniform(0.08, 0.55)
        w, h = rng.uniform(0.1, 0.2), rng.uniform(0.06, 0.12)
        d.ellipse(_sub(box, cx - w, cy - h, cx + w, cy + h), fill=_jit(rng, green, 25))
    d.line(_sub(box, 0.5, 0.3, 0.5, 0.6), fill=(60, 100, 40), width=2)


def _draw_chair(d, rng, box, bg):
    wood = _jit(rng, pick(rng, [(150, 100, 60), (150, 100, 60), (30, 30, 30), (235, 235, 230),
                                 (200, 160, 110)]))
    width = max(2, int((box[2] - box[0]) * 0.05))
    if rng.random() < 0.25:  # a table
        d.rectangle(_sub(box, 0.0, 0.35, 1.0, 0.45), fill=wood, outline=_darker(wood))
        for fx in (0.05, 0.88):
            d.rectangle(_sub(box, fx, 0.45, fx + 0.07, 0.95), fill=_darker(wood, 0.8))
        return
    seat = _jit(rng, pick(rng, [wood, (190, 60, 50), (60, 90, 150), (120, 120, 120)]), 10)
    d.rectangle(_sub(box, 0.2, 0.0, 0.8, 0.45), fill=wood, outline=_darker(wood))
    d.rectangle(_sub(box, 0.26, 0.07, 0.74, 0.38), fill=_lighter(wood, 0.25))
    d.rectangle(_sub(box, 0.15, 0.5, 0.85, 0.6), fill=seat, outline=_darker(seat))
    for fx0, fx1 in ((0.18, 0.12), (0.82, 0.88)):
        d.line(_sub(box, fx0, 0.6, fx1, 1.0), fill=_darker(wood, 0.8), width=width)
    d.line(_sub(box, 0.3, 0.6, 0.32, 0.93), fill=_darker(wood, 0.7), width=max(1, width - 1))
    d.line(_sub(box, 0.7, 0.6, 0.68, 0.93), fill=_darker(wood, 0.7), width=max(1, width - 1))


def _draw_mug(d, rng, box, bg):
    colour = _jit(rng, pick(rng, [(250, 250, 250), (200, 40, 40), (40, 80, 170), (30, 30, 30),
                                   (250, 200, 210), (170, 220, 200)]))
    if rng.random() < 0.2:  # a plate
        d.ellipse(_sub(box, 0.0, 0.2, 1.0, 0.8), fill=colour, outline=_darker(colour, 0.7))
        d.ellipse(_sub(box, 0.2, 0.32, 0.8, 0.68), fill=_darker(colour, 0.92))
        return
    width = max(3, int((box[2] - box[0]) * 0.07))
    d.ellipse(_sub(box, 0.58, 0.35, 0.92, 0.75), outline=_darker(colour, 0.9), width=width)
    body = _sub(box, 0.15, 0.25, 0.72, 0.92)
    d.rounded_rectangle(body, radius=5, fill=colour, outline=_darker(colour, 0.7))
    d.ellipse(_sub(body, 0.0, -0.06, 1.0, 0.08), fill=_darker(colour, 0.5))
    pattern = rng.random()
    if pattern < 0.2:
        accent = _jit(rng, pick(rng, [(240, 200, 40), (250, 250, 250), (230, 60, 60)]))
        for fx, fy in ((0.2, 0.3), (0.55, 0.35), (0.35, 0.6), (0.7, 0.7), (0.15, 0.8)):
            d.ellipse(_sub(body, fx, fy, fx + 0.12, fy + 0.1), fill=accent)
    elif pattern < 0.35:
        d.rectangle(_sub(body, 0.0, 0.45, 1.0, 0.6), fill=_darker(colour, 0.6))
    if rng.random() < 0.25:  # steam
        for fx in (0.3, 0.45, 0.6):
            d.arc(_sub(box, fx - 0.05, 0.02, fx + 0.05, 0.2), 90, 270, fill=(170, 170, 170), width=2)


def _draw_toy(d, rng, box, bg):
    if rng.random() < 0.3:  # building bricks
        for _ in range(int(rng.integers(3, 6))):
            colour = _jit(rng, pick(rng, [(220, 30, 30), (250, 200, 0), (0, 90, 190),
                                           (40, 160, 60), (250, 250, 250)]), 10)
            x, y = rng.uniform(0.05, 0.55), rng.uniform(0.2, 0.75)
            d.rectangle(_sub(box, x, y, x + 0.4, y + 0.18), fill=colour, outline=_darker(colour))
            for i in range(4):
                d.rectangle(_sub(box, x + 0.03 + i * 0.1, y - 0.04, x + 0.09 + i * 0.1, y),
                            fill=colour)
        return
    fur = _jit(rng, pick(rng, [(150, 100, 60), (150, 100, 60), (220, 190, 150), (240, 170, 190),
                                (235, 235, 230), (140, 140, 140)]))
    d.ellipse(_sub(box, 0.22, 0.45, 0.78, 1.0), fill=fur)
    d.ellipse(_sub(box, 0.2, 0.0, 0.38, 0.18), fill=fur)
    d.ellipse(_sub(box, 0.62, 0.0, 0.8, 0.18), fill=fur)
    d.ellipse(_sub(box, 0.25, 0.05, 0.75, 0.55), fill=fur)
    d.ellipse(_sub(box, 0.4, 0.3, 0.6, 0.48), fill=_lighter(fur, 0.5))
    d.ellipse(_sub(box, 0.36, 0.2, 0.42, 0.26), fill=(20, 20, 20))
    d.ellipse(_sub(box, 0.58, 0.2, 0.64, 0.26), fill=(20, 20, 20))
    d.ellipse(_sub(box, 0.47, 0.33, 0.53, 0.38), fill=(30, 20, 20))
    d.ellipse(_sub(box, 0.1, 0.5, 0.3, 0.7), fill=fur)
    d.ellipse(_sub(box, 0.7, 0.5, 0.9, 0.7), fill=fur)


def _draw_lamp(d, rng, box, bg):
    shade = _jit(rng, pick(rng, [(245, 235, 205), (250, 250, 250), (30, 30, 30),
                                  (210, 170, 60)]))
    metal = _jit(rng, pick(rng, [(180, 150, 80), (40, 40, 40), (190, 190, 190)]))
    kind = rng.random()
    if kind < 0.2:  # a bulb
        d.ellipse(_sub(box, 0.2, 0.0, 0.8, 0.6), fill=_jit(rng, (255, 240, 170), 10),
                  outline=(200, 190, 140))
        d.rectangle(_sub(box, 0.36, 0.58, 0.64, 0.85), fill=_jit(rng, (170, 170, 170), 10))
        return
    d.ellipse(_sub(box, 0.1, 0.05, 0.9, 0.6), fill=_jit(rng, (255, 240, 180), 8))  # glow
    if kind < 0.5:  # a pendant
        d.line(_sub(box, 0.5, -0.5, 0.5, 0.3), fill=(40, 40, 40), width=2)
        d.pieslice(_sub(box, 0.15, 0.3, 0.85, 0.9), 180, 360, fill=shade, outline=_darker(shade))
        return
    x0, y0, x1, y1 = _sub(box, 0.2, 0.05, 0.8, 0.4)
    inset = (x1 - x0) * 0.2
    d.polygon([(x0 + inset, y0), (x1 - inset, y0), (x1, y1), (x0, y1)], fill=shade,
              outline=_darker(shade))
    d.line(_sub(box, 0.5, 0.4, 0.5, 0.92), fill=metal, width=max(2, int((box[2] - box[0]) * 0.04)))
    d.ellipse(_sub(box, 0.3, 0.88, 0.7, 0.98), fill=metal)


_DRAWERS: dict[int, Callable] = {
    10: _draw_book, 20: _draw_magazine, 30: _draw_game, 40: _draw_console, 50: _draw_pool,
    60: _draw_plant, 70: _draw_chair, 80: _draw_mug, 90: _draw_toy, 100: _draw_lamp,
}
#: Typical backdrops (a pool's water, a living-room floor, a dim room for a lamp...).
_BACKGROUNDS = {10: (205, 180, 140), 20: (235, 200, 215), 30: (120, 110, 160), 40: (70, 70, 80), 50: (150, 205, 240), 60: (225, 215, 190),
                70: (215, 195, 165), 80: (200, 205, 200), 90: (245, 215, 225), 100: (90, 80, 75)}


def draw_image(rng: np.random.Generator, cat: Category, size: int) -> Image.Image:
    code = cat.code
    if cat.neighbours and rng.random() < _P_IMAGE_FROM_NEIGHBOUR:
        code = pick(rng, cat.neighbours)
    border = int(rng.integers(3, max(4, size // 7))) if rng.random() < 0.2 else 0
    inner = size - 2 * border
    roll = rng.random()
    if roll < 0.4:
        bg = _jit(rng, (252, 252, 252), 3)
    elif code in _BACKGROUNDS and roll < 0.85:
        bg = _jit(rng, _BACKGROUNDS[code], 15)
    else:
        bg = tuple(int(v) for v in rng.integers(180, 246, 3))
    img = Image.new("RGB", (inner, inner), bg)
    d = ImageDraw.Draw(img)
    frac = rng.uniform(0.6, 0.9)
    side = frac * inner
    cx = inner / 2 + rng.uniform(-0.4, 0.4) * (inner - side)
    cy = inner / 2 + rng.uniform(-0.4, 0.4) * (inner - side)
    _DRAWERS[code](d, rng, (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2), bg)
    if rng.random() < 0.4:
        pixels = np.asarray(img, dtype=np.int16)
        pixels = pixels + rng.normal(0, rng.uniform(3, 9), pixels.shape).astype(np.int16)
        img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    if border:
        framed = Image.new("RGB", (size, size), (255, 255, 255))
        framed.paste(img, (border, border))
        img = framed
    return img
