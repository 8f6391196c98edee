"""Procedural images drawn with Pillow from a prompt and a seed: shapes, not a diffusion model.

The picture is a two-colour gradient with ``steps`` translucent shapes drawn
on top, one per step. Colours come from colour words in the prompt when it has
any (in any glossary language), else from a seeded palette. The same prompt,
seed, size and steps always give the same pixels.
"""

from __future__ import annotations

import colorsys
import hashlib
import random
from collections.abc import Mapping
from pathlib import Path

from PIL import Image, ImageDraw

from ._words import tokens

RGB = tuple[int, int, int]

#: English colour names and their RGB; other languages reach them through the glossary.
COLOURS: dict[str, RGB] = {
    "red": (220, 40, 40),
    "blue": (40, 90, 220),
    "green": (40, 170, 70),
    "yellow": (245, 210, 40),
    "black": (20, 20, 25),
    "white": (245, 245, 240),
    "pink": (240, 130, 180),
    "brown": (130, 80, 40),
    "grey": (140, 140, 140),
    "orange": (245, 140, 30),
    "golden": (212, 175, 55),
}


def seeded_rng(prompt: str, seed: int, purpose: str) -> random.Random:
    """A random generator determined by the prompt, the seed and what it is for."""
    # surrogatepass: every text the API accepts (lone surrogates included) has a digest
    text = f"{purpose}\x00{seed}\x00{prompt}".encode("utf-8", "surrogatepass")
    digest = hashlib.sha256(text).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _palette(prompt: str, rng: random.Random, colour_words: Mapping[str, RGB]) -> list[RGB]:
    named = [colour_words[w.casefold()] for w in tokens(prompt) if w.casefold() in colour_words]
    if len(named) >= 2:
        return named
    base = rng.random()
    palette = [
        tuple(
            int(c * 255)
            for c in colorsys.hsv_to_rgb((base + k * 0.13) % 1.0, 0.45 + 0.5 * rng.random(), 0.95)
        )
        for k in range(4)
    ]
    return named + palette  # type: ignore[operator]


def draw_image(
    prompt: str,
    path: Path,
    *,
    width: int,
    height: int,
    seed: int,
    steps: int,
    colour_words: Mapping[str, RGB] | None = None,
) -> None:
    """Draw the picture for ``prompt`` and write it to ``path`` as a PNG.

    Args:
        prompt: the text the picture is drawn from.
        path: the PNG file to write (its folder must exist).
        width, height: size in pixels.
        seed: the random seed.
        steps: how many shapes are drawn on the gradient.
        colour_words: lower-case words that name a colour, in any language.
    """
    rng = seeded_rng(prompt, seed, "image")
    palette = _palette(prompt, rng, colour_words or COLOURS)
    top, bottom = rng.choice(palette), rng.choice(palette)
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image, "RGBA")
    for y in range(height):
        t = y / max(1, height - 1)
        colour = tuple(int(a + (b - a) * t) for a, b in zip(top, bottom, strict=True))
        draw.line([(0, y), (width, y)], fill=colour)
    for _ in range(steps):
        r, g, b = rng.choice(palette)
        fill = (r, g, b, rng.randint(90, 200))
        x0, y0 = rng.randrange(width), rng.randrange(height)
        size = max(2, int(min(width, height) * rng.uniform(0.05, 0.45)))
        box = (x0 - size, y0 - size, x0 + size, y0 + size)
        shape = rng.randrange(4)
        if shape == 0:
            draw.ellipse(box, fill=fill)
        elif shape == 1:
            draw.rectangle(box, fill=fill)
        elif shape == 2:
            points = [(rng.randrange(width), rng.randrange(height)) for _ in range(3)]
            draw.polygon(points, fill=fill)
        else:
            end = (rng.randrange(width), rng.randrange(height))
            draw.line([(x0, y0), end], fill=fill, width=max(1, size // 6))
    image.save(path, format="PNG")
