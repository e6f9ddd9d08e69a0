"""Extract HCRN/DualVGR clip features from a dataset's videos into HDF5 with a registered backbone (appearance or
motion; preprocess/backbones/: ResNet-101, 3D ResNeXt-101, ...).

    python -m preprocess.preprocess_features --dataset msvd-qa --dataset_dir /data/MSVD-QA --model resnet101
    python -m preprocess.preprocess_features --dataset msvd-qa --dataset_dir /data/MSVD-QA --model resnext101
    python -m preprocess.preprocess_features --dataset tgif-qa --question_type action --dataset_dir /data/TGIF-QA \
        --model resnet101

Output (HCRN/DualVGR layout, docs/data_formats.md): appearance ``resnet_features`` float32 (N, C, F, D) or motion
``resnext_features`` float32 (N, C, D), whatever the backbone (D its feature width; the ``model`` attribute names
it); ``ids`` int64 (N,) video ids in increasing order; plus ``valid`` uint8 (N,)
(0: the video did not decode, its row is zeros), ``done`` uint8 (N,) (rows finished, for resuming),
``num_decoded_frames`` int32 (N,) (frames the video decoded to; clips were sampled over these),
``failure_reason`` (N,) bytes, and the extraction settings as attributes (the backbone's name, kind, feature width,
input size, normalisation, frame sampling, weights file, source and sha256, whether BatchNorm was recalibrated). Failed videos are also listed in
``<out>.failed.tsv`` (video_id, path, reason, status ``failed``), and so are *partial* ones (status ``partial``):
videos that decode fewer frames than their container declares (a truncated or damaged file) keep ``valid = 1``,
with clips sampled over the frames that did decode, and their ``failure_reason`` says how many decoded.
BatchNorm recalibration (``--random_init``) uses only videos that decoded fully; their ids are recorded in the
attributes ``bn_calibration_ids`` (comma-separated) and ``bn_calibration_num_videos``.

Rerunning the same command resumes an interrupted run; other settings than the file's are refused (``--overwrite``).
``--shard I --num_shards N`` extracts every N-th video into ``<out stem>.shard<I>of<N>.h5``; join the shards with
``python -m preprocess.merge_features``.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from utils.openmp_policy import default_openmp_wait_policy
default_openmp_wait_policy()  # before torch loads; see utils/openmp_policy.py

from preprocess.backbones import backbone_names  # noqa: E402
from preprocess.datasets import dataset_names  # noqa: E402
# The library (preprocess/feature_extraction.py); FLUSH_INTERVAL_S and _RowWriter are named here so that a test can
# change how often this command commits rows (tests/test_features.py kills it after three committed rows).
from preprocess.feature_extraction import FLUSH_INTERVAL_S, _RowWriter, log, run  # noqa: E402,F401
from utils.cli import exit_on_input_error  # noqa: E402


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a flag's default only where it has one."""

    def _get_help_string(self, action):
        return action.help if action.default in (None, False) else super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m preprocess.preprocess_features", description=__doc__.split("\n\n")[0],
        formatter_class=_HelpFormatter)
    parser.add_argument("--dataset", required=True, choices=dataset_names(with_aliases=True),
                        help="which published layout --dataset_dir has")
    parser.add_argument("--question_type", default=None,
                        help="TGIF-QA task (action, transition, count, frameqa): its question files name the GIFs "
                             "to extract and the output file")
    parser.add_argument("--dataset_dir", required=True,
                        help="MSVD-QA: YouTubeClips/ and youtube_mapping.txt; MSRVTT-QA: TrainValVideo/ and "
                             "TestVideo/; both and SVQA: {train,val,test}_qa.json (the videos they reference are "
                             "extracted; SVQA's from useVideo/<id>.mp4); TGIF-QA: {Train,Test}_<task>_question.csv "
                             "and gifs/; NExT-QA: {train,val,test}.csv, map_vid_vidorID.json and NExTVideo/")
    parser.add_argument("--model", required=True, choices=backbone_names(),
                        help="the backbone (preprocess/backbones/): resnet101: appearance (frames, 2048-d); "
                             "resnext101: motion (clips, 2048-d); efficientnet_lite0: appearance (frames, 1280-d, "
                             "ImageNet weights from its pip package); efficientnet_lite0_motion: motion (clips, "
                             "400-d, built from the same weights)")
    parser.add_argument("--out", default=None,
                        help="output HDF5 (default data/<dataset>/<dataset>[_<question_type>]_{appearance,motion}"
                             "_feat.h5 in the repo)")
    parser.add_argument("--num_clips", type=int, default=None,
                        help="clips per video (default: the dataset's: 8 MSVD-QA and TGIF-QA, 16 MSRVTT-QA and "
                             "NExT-QA, 20 SVQA)")
    parser.add_argument("--num_frames", type=int, default=16, help="frames per clip")
    parser.add_argument("--image_height", type=int, default=None,
                        help="frame height (default: the backbone's input size, 224 resnet101, 112 resnext101)")
    parser.add_argument("--image_width", type=int, default=None,
                        help="frame width (default: the backbone's input size)")
    parser.add_argument("--weights", default=None,
                        help="resnet101: torchvision ImageNet state dict (.pth); resnext101: resnext-101-kinetics.pth. "
                             "Default: data/weights/<that file> in the repo (its hash checked), or the file a "
                             "package installed for the backbone")
    parser.add_argument("--random_init", action="store_true",
                        help="use random weights (demo/tests: the features carry little information)")
    parser.add_argument("--no_bn_recalibration", action="store_true",
                        help="with --random_init, keep the initial BatchNorm statistics instead of recalibrating them "
                             "on the dataset's frames")
    parser.add_argument("--calibration_videos", type=int, default=8,
                        help="videos (seeded sample of the whole dataset) whose frames recalibrate BatchNorm")
    parser.add_argument("--seed", type=int, default=666, help="seeds random init and the calibration sample")
    parser.add_argument("--motion_input", default=None,
                        help="the backbone's input normalisation, for those that offer several (default: its first). "
                             "resnext101: kinetics_mean (default) = 0-255 minus (114.7748, 107.7354, 99.4750), the "
                             "checkpoint's training input; raw = 0-255 pixels, as HCRN/DualVGR fed it")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--fp16", action="store_true",
                        help="float16 autocast (CUDA only; otherwise float32 throughout, TF32 disabled)")
    parser.add_argument("--channels_last", choices=["auto", "on", "off"], default="auto",
                        help="channels-last memory format (auto: on for CUDA)")
    parser.add_argument("--batch_size", type=int, default=None,
                        help="frames (appearance) or clips (motion) per CNN batch (default: the backbone's, "
                             "resnet101 128, resnext101 16)")
    parser.add_argument("--num_workers", type=int, default=max(1, min(8, (os.cpu_count() or 2) // 2)),
                        help="decoding worker processes (0: decode in the main process)")
    parser.add_argument("--shard", type=int, default=0, help="this run's shard index I (0 <= I < N)")
    parser.add_argument("--num_shards", type=int, default=1,
                        help="split the videos into N disjoint shards (every N-th video), each its own file")
    parser.add_argument("--limit", type=int, default=None,
                        help="stop after this many videos (a quick try; rerun without it to finish the file)")
    parser.add_argument("--overwrite", action="store_true",
                        help="start over even if the output exists with other settings or is already complete")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args, FLUSH_INTERVAL_S)
    except KeyboardInterrupt:
        log("interrupted: the finished videos are saved; rerun the same command to continue", "yellow")
        return 130
    except Exception as e:  # input or environment: one line and exit code 2 (utils/cli.py); a bug: its traceback
        return exit_on_input_error(e, lambda line: log(line, "red"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
