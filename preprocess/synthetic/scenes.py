"""The shared scene generator of every synthetic dataset: one or two coloured shapes moving on black.

A scene is a list of shapes, each with its shape, colour, direction, speed, when it moves and its box centre per
frame (:func:`sample_scene`); :class:`SyntheticSpec` holds everything that determines the scenes. The MSVD-QA demo
(msvd_qa.py) renders them as they are; the official layouts of the other datasets (svqa.py, tgif_qa.py,
nextqa.py, msrvtt_qa.py) draw small scenes whose shapes are also "small" or "large" (:func:`make_scenes`). The
words shared by the question templates of every layout are here too.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from preprocess.synthetic import DEFAULT_FRAMES, DEFAULT_SIZE
from preprocess.synthetic.render import BACKGROUND, COLORS, shape_masks

# Uniform priors: within a question template every answer is equally likely, so the question text alone does no
# better than chance given its template (chance_given_template), and a model must look at the video to do better.
COLOR_PRIOR = {"red": 0.2, "blue": 0.2, "green": 0.2, "yellow": 0.2, "white": 0.2}
SHAPE_PRIOR = {"circle": 0.25, "square": 0.25, "triangle": 0.25, "diamond": 0.25}
DIRECTION_PRIOR = {"right": 0.25, "left": 0.25, "up": 0.25, "down": 0.25}
SPEED_PRIOR = {"fast": 0.5, "slow": 0.5}
# When the shape moves: all along, only in the first half (then still) or only in the second half (still before).
MOVING_PRIOR = {"whole": 1 / 3, "beginning": 1 / 3, "end": 1 / 3}

DIRECTION_VECTORS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}
PLACE_OF_DIRECTION = {"left": "left", "right": "right", "up": "top", "down": "bottom"}
ADVERB_OF_SPEED = {"fast": "quickly", "slow": "slowly"}
NUMBER_WORDS = {1: "one", 2: "two"}

RADIUS_FRACTION = 0.16   # shape radius (half its box side) as a fraction of the frame side: large colour areas
MARGIN = 1               # pixels kept free between a shape's box and the frame border
FAST_FRACTION = 0.9      # a fast shape moving all along crosses this fraction of its free range
SLOW_FACTOR = 0.4        # slow speed / fast speed
MIN_GAP = 2              # pixels kept between the boxes of two shapes in every frame (no overlap, ever)
MAX_PATH_DRAWS = 1000    # overlapping paths of two shapes are redrawn this often before their attributes are
MAX_SCENE_DRAWS = 100    # and the attributes this often before giving up (a few draws suffice in practice)


@dataclass(frozen=True)
class SyntheticSpec:
    """Everything that determines the generated dataset: the same spec gives byte-identical files."""
    num_videos: int = 200
    seed: int = 0
    frames: int = 24
    size: int = 64
    fps: int = 12
    questions_per_video: int = 48
    two_shape_fraction: float = 0.5
    val_fraction: float = 0.1
    test_fraction: float = 0.3

    def validate(self) -> None:
        """Raise ValueError naming the offending setting."""
        checks = [
            (3 <= self.num_videos <= 99_999, "num_videos must be in [3, 99999] (every split needs a video)"),
            (self.seed >= 0, "seed must be >= 0"),
            (8 <= self.frames <= 1000, "frames must be in [8, 1000]"),
            (32 <= self.size <= 1024 and self.size % 2 == 0, "size must be even and in [32, 1024]"),
            (1 <= self.fps <= 120, "fps must be in [1, 120]"),
            (self.questions_per_video >= 1, "questions_per_video must be >= 1"),
            (0.0 <= self.two_shape_fraction <= 1.0, "two_shape_fraction must be in [0, 1]"),
            (0.0 < self.val_fraction and 0.0 < self.test_fraction and self.val_fraction + self.test_fraction < 1.0,
             "val_fraction and test_fraction must be > 0 with a sum < 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"synthetic dataset: {message}, got {self}")

    @property
    def radius(self) -> int:
        return round(RADIUS_FRACTION * self.size)

    @property
    def free_range(self) -> tuple[float, float]:
        """Lowest and highest box-centre coordinate that keeps a shape inside the frame."""
        return self.radius + MARGIN, self.size - self.radius - MARGIN

    @property
    def speeds(self) -> dict[str, float]:
        """Pixels per frame while moving, per speed name."""
        low, high = self.free_range
        fast = FAST_FRACTION * (high - low) / (self.frames - 1)
        return {"fast": fast, "slow": SLOW_FACTOR * fast}


# ---------------------------------------------------------------------------------------------------------- scenes
def _draw(rng: np.random.Generator, prior: dict[str, float], exclude: tuple = ()) -> str:
    names = [name for name in prior if name not in exclude]
    weights = np.array([prior[name] for name in names])
    return names[rng.choice(len(names), p=weights / weights.sum())]


def moving_steps(moving: str, num_frames: int) -> np.ndarray:
    """(T - 1,) bool: whether the shape moves between frame t and t + 1."""
    steps = np.zeros(num_frames - 1, dtype=bool)
    half = (num_frames - 1) // 2
    if moving == "whole":
        steps[:] = True
    elif moving == "beginning":
        steps[:half] = True
    else:
        steps[-half:] = True
    return steps


def _sample_path(rng: np.random.Generator, direction: str, speed: float, moving: str,
                 spec: SyntheticSpec) -> np.ndarray:
    """(T, 2) box centres of a shape moving in a straight line that stays inside the frame."""
    low, high = spec.free_range
    travelled = np.concatenate([[0.0], np.cumsum(moving_steps(moving, spec.frames))]) * speed   # (T,)
    total = travelled[-1]
    vector = np.array(DIRECTION_VECTORS[direction])
    sign = vector.sum()
    along = 0 if vector[0] else 1
    start = np.empty(2)
    start[along] = rng.uniform(low, max(low, high - total)) if sign > 0 else rng.uniform(min(high, low + total), high)
    start[1 - along] = rng.uniform(low, high)
    return np.round(start[None, :] + travelled[:, None] * vector[None, :], 3)


def _boxes_overlap(first: np.ndarray, second: np.ndarray, radius: float) -> bool:
    """Whether two shapes' boxes (centres (T, 2)) come closer than MIN_GAP pixels in any frame."""
    apart = np.abs(first - second) >= 2 * radius + MIN_GAP   # (T, 2)
    return not apart.any(axis=1).all()


def _sample_attributes(rng: np.random.Generator, count: int, spec: SyntheticSpec) -> list[dict]:
    """`count` shapes with distinct shapes, colours and directions; speed and when they move drawn freely."""
    objects = []
    for _ in range(count):
        taken = {key: tuple(obj[key] for obj in objects) for key in ("shape", "color", "direction")}
        obj = {
            "shape": _draw(rng, SHAPE_PRIOR, taken["shape"]),
            "color": _draw(rng, COLOR_PRIOR, taken["color"]),
            "direction": _draw(rng, DIRECTION_PRIOR, taken["direction"]),
            "speed": _draw(rng, SPEED_PRIOR),
            "moving": _draw(rng, MOVING_PRIOR),
        }
        obj["speed_px_per_frame"] = round(spec.speeds[obj["speed"]], 4)
        objects.append(obj)
    return objects


def sample_scene(rng: np.random.Generator, spec: SyntheticSpec) -> list[dict]:
    """One or two shapes with distinct colours, shapes and directions, never overlapping.

    Returns dicts with shape, color, direction, speed (fast/slow), speed_px_per_frame, moving
    (whole/beginning/end) and positions ((T, 2) float array of box centres). Paths that overlap are redrawn first
    (keeping the attributes, so crossing directions stay as likely as parallel ones), then the attributes.
    """
    count = 2 if rng.random() < spec.two_shape_fraction else 1
    for _ in range(MAX_SCENE_DRAWS):
        objects = _sample_attributes(rng, count, spec)
        for _ in range(MAX_PATH_DRAWS):
            paths = [_sample_path(rng, obj["direction"], obj["speed_px_per_frame"], obj["moving"], spec)
                     for obj in objects]
            if count == 1 or not _boxes_overlap(paths[0], paths[1], spec.radius):
                return [{**obj, "positions": path} for obj, path in zip(objects, paths)]
    raise RuntimeError(f"no two non-overlapping shapes fit in {MAX_SCENE_DRAWS} draws for {spec}")


# -------------------------------------------------------------------------------------------- official layouts
FPS = 8
SIZES = ("small", "large")
SMALL_FRACTION = 0.6          # a small shape's radius / a large one's
DIRECTIONS = ("left", "right", "up", "down")
# random streams of the official layouts' scenes and questions (the MSVD-QA demo has its own, msvd_qa.py)
LAYOUT_SCENE_STREAM, LAYOUT_SIZE_STREAM, LAYOUT_QUESTION_STREAM = 10, 11, 12


def make_scenes(num_videos: int, seed: int, frames: int = DEFAULT_FRAMES, size: int = DEFAULT_SIZE) -> list[dict]:
    """``num_videos`` scenes: {"objects": [...], "frames": uint8 (T, size, size, 3)}, objects as sample_scene's plus
    ``size`` (small | large)."""
    spec = SyntheticSpec(num_videos=max(num_videos, 3), seed=seed, frames=frames, size=size)
    scenes = []
    for video in range(num_videos):
        objects = sample_scene(np.random.default_rng([seed, LAYOUT_SCENE_STREAM, video]), spec)
        size_rng = np.random.default_rng([seed, LAYOUT_SIZE_STREAM, video])
        for obj in objects:
            obj["size"] = SIZES[int(size_rng.integers(2))]
        scenes.append({"objects": objects, "frames": render(objects, spec.radius, size, frames)})
    return scenes


def render(objects: list[dict], radius: float, size: int, num_frames: int) -> np.ndarray:
    """uint8 (T, size, size, 3): each object drawn with its own radius (small ones ``SMALL_FRACTION`` of it)."""
    frames = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    frames[:] = BACKGROUND
    for obj in objects:
        own = radius * (SMALL_FRACTION if obj["size"] == "small" else 1.0)
        frames[shape_masks(obj["shape"], np.asarray(obj["positions"]), own, size)] = COLORS[obj["color"]]
    return frames


def split_videos(num_videos: int, fractions=(0.7, 0.15)) -> list[str]:
    """Split of each video (train first, then val, then test; each split gets at least one video)."""
    num_train = max(1, min(num_videos - 2, round(fractions[0] * num_videos)))
    num_val = max(1, min(num_videos - num_train - 1, round(fractions[1] * num_videos)))
    return ["train"] * num_train + ["val"] * num_val + ["test"] * (num_videos - num_train - num_val)


def shape_name(obj: dict) -> str:
    """"red circle": how the official layouts' questions name a shape."""
    return f"{obj['color']} {obj['shape']}"


def shuffled_candidates(rng: np.random.Generator, right: str, options: list[str]) -> tuple[list[str], int]:
    """The five candidates (``right`` among them, in a seeded order) and the right one's index."""
    order = rng.permutation(5)
    candidates = [options[i] for i in order]
    return candidates, candidates.index(right)
