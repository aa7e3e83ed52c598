"""Synthetic images with known classes: a shape per image, so a person could label them too."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle")
_COLORS = [(220, 60, 60), (60, 160, 80), (60, 90, 200), (200, 160, 40), (140, 70, 170)]


@dataclass(frozen=True)
class LabeledImage:
    path: Path
    label: str

    @property
    def uri(self) -> str:
        return self.path.resolve().as_uri()


def generate_images(
    directory: Path, count: int, *, classes: tuple[str, ...] = SHAPES, seed: int = 7, size: int = 96
) -> list[LabeledImage]:
    """Draw ``count`` PNGs, one shape each, cycling through ``classes`` (known truth)."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    images = []
    for n in range(count):
        label = classes[n % len(classes)]
        img = Image.new("RGB", (size, size), (245, 245, 240))
        draw = ImageDraw.Draw(img)
        color = rng.choice(_COLORS)
        r = rng.randint(size // 5, size // 3)
        cx, cy = rng.randint(r, size - r), rng.randint(r, size - r)
        if label == "circle":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=color)
        elif label == "square":
            draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=color)
        elif label == "triangle":
            draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=color)
        else:
            draw.text((8, size // 2 - 6), label, fill=color)
        path = directory / f"image_{n:05d}.png"
        img.save(path, optimize=False)
        images.append(LabeledImage(path=path, label=label))
    return images
