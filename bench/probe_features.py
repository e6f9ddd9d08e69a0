"""Linear probes: which video attributes of the synthetic dataset a feature file carries.

    python -m bench.probe_features --raw data/demo/raw --features data/demo/msvd-qa_appearance_feat.h5 \
        data/demo/msvd-qa_motion_feat.h5

For each feature file and each attribute, a multinomial logistic regression (features standardised on the training
folds, L2 penalty, L-BFGS) is trained on per-video vectors and scored by 5-fold cross-validation over the videos
(folds seeded); the table gives its accuracy beside the majority class's (the most frequent label of the training
folds). Per-video vector: the features averaged over clips and frames (``mean``), and the clips' features (frames
averaged) concatenated in time order (``clips``), which keeps when something happens.

Attributes, from the dataset's metadata.json (ground truth): count (1 or 2 shapes); colour, shape, direction,
speed (fast / slow) and moving phase (whole / beginning / end) of the shape in one-shape videos; colour set (the
two colours, unordered) of two-shape videos.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from utils.openmp_policy import default_openmp_wait_policy
default_openmp_wait_policy()  # before torch loads; see utils/openmp_policy.py

import h5py
import numpy as np
import torch

from utils.cli import exit_on_input_error

ATTRIBUTES = ("count", "colour", "colour set", "shape", "direction", "speed", "moving phase")
POOLINGS = ("mean", "clips")


def video_labels(metadata: dict) -> dict[str, dict[int, str]]:
    """attribute -> {video_id: label} for the videos where the attribute is defined."""
    labels = {name: {} for name in ATTRIBUTES}
    for video in metadata["videos"]:
        objects, video_id = video["objects"], video["video_id"]
        labels["count"][video_id] = str(len(objects))
        if len(objects) == 1:
            obj = objects[0]
            for name, key in (("colour", "color"), ("shape", "shape"), ("direction", "direction"),
                              ("speed", "speed"), ("moving phase", "moving")):
                labels[name][video_id] = obj[key]
        else:
            labels["colour set"][video_id] = "+".join(sorted(obj["color"] for obj in objects))
    return labels


def video_vectors(path: Path, pooling: str) -> dict[int, np.ndarray]:
    """video_id -> one vector per video from an HDF5 feature file (appearance (N, C, F, D) or motion (N, C, D))."""
    with h5py.File(path, "r") as f:
        key = "resnet_features" if "resnet_features" in f else "resnext_features"
        features, ids = f[key][:].astype(np.float64), f["ids"][:]
    if features.ndim == 4:
        features = features.mean(axis=2)  # (N, C, D): frames averaged within each clip
    vectors = features.mean(axis=1) if pooling == "mean" else features.reshape(len(features), -1)
    return {int(video_id): vector for video_id, vector in zip(ids, vectors)}


def fit_predict(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, classes: int,
                weight_decay: float) -> np.ndarray:
    """Predicted classes of test_x from a logistic regression fitted on (train_x, train_y)."""
    mean, std = train_x.mean(axis=0), train_x.std(axis=0) + 1e-6
    x = torch.tensor((train_x - mean) / std, dtype=torch.float64)
    y = torch.tensor(train_y)
    weight = torch.zeros(x.shape[1], classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([weight, bias], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ weight + bias, y) + weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    with torch.no_grad():
        test = torch.tensor((test_x - mean) / std, dtype=torch.float64)
        return (test @ weight + bias).argmax(dim=1).numpy()


def probe(vectors: dict[int, np.ndarray], labels: dict[int, str], folds: int, seed: int,
          weight_decay: float) -> tuple[float, float, int]:
    """(cross-validated probe accuracy, majority accuracy, videos) of one attribute."""
    ids = sorted(video_id for video_id in labels if video_id in vectors)
    names = sorted(set(labels[v] for v in ids))
    x = np.stack([vectors[v] for v in ids])
    y = np.array([names.index(labels[v]) for v in ids])
    fold_of = np.random.default_rng(seed).permutation(len(ids)) % folds
    correct = majority = 0
    for fold in range(folds):
        train, test = fold_of != fold, fold_of == fold
        predicted = fit_predict(x[train], y[train], x[test], len(names), weight_decay)
        correct += int((predicted == y[test]).sum())
        majority += int((y[test] == np.bincount(y[train], minlength=len(names)).argmax()).sum())
    return correct / len(ids), majority / len(ids), len(ids)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.probe_features", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--raw", type=Path, default=Path("data/demo/raw"),
                        help="the synthetic dataset's folder (its metadata.json has the ground truth)")
    parser.add_argument("--features", type=Path, nargs="+", required=True, help="HDF5 feature files to probe")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds over the videos")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fold assignment")
    parser.add_argument("--weight_decay", type=float, default=1e-3, help="L2 penalty on the probe's weights")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    try:
        return probe_all(args)
    except Exception as e:  # a missing or malformed file: one line and exit code 2 (utils/cli.py)
        raise SystemExit(exit_on_input_error(e)) from None


def probe_all(args: argparse.Namespace) -> dict:
    """Probe every attribute on every feature file and pooling of ``args``; print and return the accuracies."""
    torch.set_num_threads(1)
    labels = video_labels(json.loads((args.raw / "metadata.json").read_text()))
    results = {}
    header = "| attribute | videos | majority | " + " | ".join(
        f"{path.name} ({pooling})" for path in args.features for pooling in POOLINGS) + " |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    vectors = {(path, pooling): video_vectors(path, pooling) for path in args.features for pooling in POOLINGS}
    for attribute in ATTRIBUTES:
        cells, count, chance = [], 0, 0.0
        for path in args.features:
            for pooling in POOLINGS:
                accuracy, chance, count = probe(vectors[path, pooling], labels[attribute], args.folds, args.seed,
                                                args.weight_decay)
                results.setdefault(attribute, {})[f"{path.name} ({pooling})"] = accuracy
                cells.append(f"{accuracy:.2f}")
        results[attribute]["majority"] = chance
        print(f"| {attribute} | {count} | {chance:.2f} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return results


if __name__ == "__main__":
    main()
