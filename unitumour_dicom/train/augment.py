"""Augmentations that H&E needs: what differs between labs, scanners and slides.

Geometry: flips and 90-degree rotations (tissue has no up), and scale (section thickness,
scanner optics and our pixel-size assumption all vary by ±20%). Colour: stain jitter in
haematoxylin-eosin-DAB optical density space (staining protocols and fading differ), plus
brightness, contrast and saturation (scanner colour). Image quality: Gaussian blur (focus) and
JPEG artefacts (every scanner compresses). All of it on uint8 numpy with OpenCV, from a
generator the caller seeds, so a sample's augmentation does not depend on worker processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

# Ruifrok & Johnston stain vectors (rows: haematoxylin, eosin, DAB) in optical density.
_RGB_FROM_HED = np.array(
    [[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=np.float32
)
_RGB_FROM_HED /= np.linalg.norm(_RGB_FROM_HED, axis=1, keepdims=True)
_HED_FROM_RGB = np.linalg.inv(_RGB_FROM_HED).astype(np.float32)


@dataclass(frozen=True)
class AugmentConfig:
    """Strengths and probabilities; ``AugmentConfig.none()`` turns everything off."""

    flips: bool = True
    rot90: bool = True
    scale_range: tuple[float, float] = (0.8, 1.25)
    scale_p: float = 0.5
    stain_sigma: float = 0.05  # multiplicative and additive jitter per stain
    stain_p: float = 0.8
    brightness: float = 0.1
    contrast: float = 0.15
    saturation: float = 0.15
    colour_p: float = 0.8
    blur_sigma: tuple[float, float] = (0.4, 1.5)
    blur_p: float = 0.15
    jpeg_quality: tuple[int, int] = (40, 95)
    jpeg_p: float = 0.25

    @classmethod
    def none(cls) -> AugmentConfig:
        return cls(
            flips=False,
            rot90=False,
            scale_p=0.0,
            stain_p=0.0,
            colour_p=0.0,
            blur_p=0.0,
            jpeg_p=0.0,
        )


def augment_pair(
    image: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    config: AugmentConfig,
    out_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Augment an RGB uint8 image and its boolean mask alike; crop or pad to ``out_size``.

    Padding (when scaled below ``out_size``) reflects the image and the mask, as a tile that
    continues into more tissue would.
    """
    import cv2

    if config.scale_p and rng.random() < config.scale_p:
        s = float(np.exp(rng.uniform(*np.log(config.scale_range))))
        h, w = mask.shape
        size = (max(8, round(w * s)), max(8, round(h * s)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    if out_size is not None:
        image, mask = _crop_or_pad(image, mask, out_size, rng)
    if config.flips and rng.random() < 0.5:
        image, mask = image[:, ::-1], mask[:, ::-1]
    if config.rot90:
        k = int(rng.integers(4))
        image, mask = np.rot90(image, k), np.rot90(mask, k)
    image = np.ascontiguousarray(image)
    mask = np.ascontiguousarray(mask)
    if config.stain_p and rng.random() < config.stain_p:
        image = stain_jitter(image, rng, config.stain_sigma)
    if config.colour_p and rng.random() < config.colour_p:
        image = colour_jitter(image, rng, config.brightness, config.contrast, config.saturation)
    if config.blur_p and rng.random() < config.blur_p:
        sigma = float(rng.uniform(*config.blur_sigma))
        image = cv2.GaussianBlur(image, (0, 0), sigmaX=sigma)
    if config.jpeg_p and rng.random() < config.jpeg_p:
        quality = int(rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1))
        ok, buf = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
        if decoded is not None:
            image = decoded[..., ::-1]
    return np.ascontiguousarray(image), mask


def _crop_or_pad(
    image: np.ndarray, mask: np.ndarray, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    h, w = mask.shape
    pad_h, pad_w = max(0, size - h), max(0, size - w)
    if pad_h or pad_w:
        top, left = int(rng.integers(pad_h + 1)), int(rng.integers(pad_w + 1))
        pads = ((top, pad_h - top), (left, pad_w - left))
        mode: Literal["reflect", "symmetric"] = (
            "reflect" if pad_h < h and pad_w < w else "symmetric"
        )
        image = np.pad(image, (*pads, (0, 0)), mode=mode)
        mask = np.pad(mask, pads, mode=mode)
        h, w = mask.shape
    top, left = int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1))
    return image[top : top + size, left : left + size], mask[top : top + size, left : left + size]


def stain_jitter(image: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Scale and shift each stain's optical density (Tellez et al. 2018, HED jitter)."""
    rgb = image.astype(np.float32)
    od = -np.log((rgb + 1.0) / 256.0)
    hed = od.reshape(-1, 3) @ _HED_FROM_RGB
    alpha = rng.uniform(1 - sigma, 1 + sigma, size=3).astype(np.float32)
    beta = rng.uniform(-sigma, sigma, size=3).astype(np.float32)
    hed = hed * alpha + beta
    od = np.maximum(hed @ _RGB_FROM_HED, 0.0)
    out = 256.0 * np.exp(-od) - 1.0
    return np.clip(out, 0, 255).reshape(image.shape).astype(np.uint8)


def colour_jitter(
    image: np.ndarray,
    rng: np.random.Generator,
    brightness: float,
    contrast: float,
    saturation: float,
) -> np.ndarray:
    x = image.astype(np.float32)
    x *= rng.uniform(1 - brightness, 1 + brightness)
    mean = x.mean()
    x = (x - mean) * rng.uniform(1 - contrast, 1 + contrast) + mean
    grey = x @ np.array([0.299, 0.587, 0.114], np.float32)
    x = (x - grey[..., None]) * rng.uniform(1 - saturation, 1 + saturation) + grey[..., None]
    return np.clip(x, 0, 255).astype(np.uint8)
