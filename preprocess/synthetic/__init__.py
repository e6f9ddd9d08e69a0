"""Synthetic datasets in each dataset's official layout: seeded, CPU only, seconds; for the demo and the tests.

Every video shows one or two coloured shapes moving on black, and every question is answered from its scene.

    render      drawing the shapes and encoding the video files
    scenes      the shared generator: SyntheticSpec, sample_scene, the official layouts' small scenes
    msvd_qa     the demo dataset (MSVD-QA layout), with its question templates and statistics
    msrvtt_qa   MSRVTT-QA's layout (the demo's templates)
    svqa        SVQA's layout (one question per category)
    tgif_qa     TGIF-QA's layout (the four tasks)
    nextqa      NExT-QA's layout (one question per type)

A dataset's layout is one module here with ``write_layout(out, num_videos, seed, frames, size, task)`` and its
name in ``LAYOUTS``; modules are imported only when their layout is written.

    python -m preprocess.synthetic --dataset msrvtt-qa --out data/msrvtt_synthetic
    python -m preprocess.synthetic --dataset tgif-qa --out data/tgif_synthetic [--question_type action]
    python -m preprocess.synthetic.msvd_qa --out data/demo/raw --num_videos 200 --seed 0   (every demo setting)
"""
from __future__ import annotations

import importlib
from pathlib import Path

# registered dataset name -> the module (in this package) that writes its layout
LAYOUTS = {"msvd-qa": "msvd_qa", "msrvtt-qa": "msrvtt_qa", "svqa": "svqa", "tgif-qa": "tgif_qa", "nextqa": "nextqa"}
DEFAULT_NUM_VIDEOS = 12
DEFAULT_FRAMES = 12
DEFAULT_SIZE = 32


def write_synthetic(dataset: str, out_dir, task: str | None = None, num_videos: int = DEFAULT_NUM_VIDEOS,
                    seed: int = 0, frames: int = DEFAULT_FRAMES, size: int = DEFAULT_SIZE) -> dict:
    """Write ``dataset``'s official layout under ``out_dir`` (TGIF-QA: the files of ``task``, or of all four tasks
    when None). Returns the number of questions per written file or split; ValueError for a dataset without a
    synthetic layout, a task it does not have, or fewer than 4 videos."""
    from preprocess.datasets import canonical_dataset_name, get_dataset
    name = canonical_dataset_name(dataset)
    if name not in LAYOUTS:
        raise ValueError(f"no synthetic layout for {name}: {', '.join(LAYOUTS)}")
    if task is not None:
        get_dataset(name, task)  # refuses a task the dataset does not have
    if num_videos < 4:
        raise ValueError(f"num_videos must be at least 4 (every split needs a video), got {num_videos}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    module = importlib.import_module(f"{__name__}.{LAYOUTS[name]}")
    return module.write_layout(out, num_videos, seed, frames, size, task)
