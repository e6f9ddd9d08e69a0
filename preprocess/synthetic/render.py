"""Draw moving coloured shapes on a plain background and encode them as a video file with PyAV.

Coordinates are in pixels of the square frame: x grows to the right, y grows downwards, and a shape's position is
the centre of its bounding box (side ``2 * radius``). Every shape fits inside that box:

- circle: the disc of the given radius;
- square: the whole box;
- triangle: apex at the top middle, base along the bottom edge of the box;
- diamond: the square rotated by 45 degrees, its corners touching the middle of each side of the box.
"""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np

SHAPES = ("circle", "square", "triangle", "diamond")

# Saturated colours at the corners of the RGB cube: large, easily told apart even by weak random-init features.
COLORS = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "white": (255, 255, 255),
}
BACKGROUND = (0, 0, 0)

# Motion JPEG in .avi, full-resolution chroma: MPEG-4 Part 2 only has 4:2:0, which halves the colour resolution and
# smears a small blue diamond into a blob; MJPEG 4:4:4 at quantiser 2 keeps every pixel within a few levels.
VIDEO_CODEC = "mjpeg"
VIDEO_PIXEL_FORMAT = "yuvj444p"
VIDEO_QSCALE = 2        # fixed quantiser (1 best .. 31 worst)


def shape_masks(shape: str, centres: np.ndarray, radius: float, size: int) -> np.ndarray:
    """Pixels covered by one shape in every frame.

    centres: (T, 2) float array of (x, y) box centres, one row per frame.
    Returns a bool array (T, size, size), True where the shape covers the pixel centre.
    """
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")
    pixel = np.arange(size, dtype=np.float32) + 0.5
    dx = pixel[None, None, :] - centres[:, 0, None, None].astype(np.float32)   # (T, 1, W)
    dy = pixel[None, :, None] - centres[:, 1, None, None].astype(np.float32)   # (T, H, 1)
    if shape == "circle":
        return dx * dx + dy * dy <= radius * radius
    if shape == "square":
        return (np.abs(dx) <= radius) & (np.abs(dy) <= radius)
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= radius
    # triangle: half-width grows linearly from 0 at the apex (dy = -radius) to radius at the base (dy = +radius)
    return (np.abs(dy) <= radius) & (2.0 * np.abs(dx) <= dy + radius)


def render_frames(objects: list[dict], radius: float, size: int, num_frames: int) -> np.ndarray:
    """Draw the objects, later ones on top, over the plain background.

    objects: dicts with ``shape`` (a name in SHAPES), ``color`` (a name in COLORS) and ``positions``
    ((T, 2) array-like of box centres, T = num_frames).
    Returns uint8 RGB frames (T, size, size, 3).
    """
    frames = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    frames[:] = BACKGROUND
    for obj in objects:
        centres = np.asarray(obj["positions"], dtype=np.float64)
        if centres.shape != (num_frames, 2):
            raise ValueError(f"positions of a {obj['shape']} have shape {centres.shape}, expected ({num_frames}, 2)")
        mask = shape_masks(obj["shape"], centres, radius, size)
        frames[mask] = COLORS[obj["color"]]
    return frames


def encode_video(frames: np.ndarray, path: str | Path, fps: int) -> None:
    """Write uint8 RGB frames (T, H, W, 3), H and W even, as an MJPEG .avi file (single-threaded: deterministic)."""
    num_frames, height, width, channels = frames.shape
    if channels != 3 or height % 2 or width % 2:
        raise ValueError(f"frames must be (T, H, W, 3) with even H and W, got {frames.shape}")
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(VIDEO_CODEC, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, VIDEO_PIXEL_FORMAT
        stream.codec_context.thread_count = 1
        stream.codec_context.qscale = VIDEO_QSCALE
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
