"""Time predict.py end to end: one video and one question, a teacher and a distilled student side by side.

    python bench/predict.py --setting paper   # ResNet-101 + ResNeXt-101 (random init), 8 clips x 16 frames, 224 / 112
                                              # px, MSVD-QA teacher (g=4) and student (g=1) configs, V=4000, A=1002
    python bench/predict.py --setting demo    # the demo's backbones (random init or weights), clips, frames, sizes
                                              # (demo.py's feature commands) and configs

It writes, under --dir, a synthetic video of the demo's generator (paper: 240 x 240 pixels, 300 frames, about an
MSVD-QA clip; demo: the demo's 64 x 64, 24 frames), a vocabulary, and two checkpoints of the setting's configs with
random weights and the setting's extraction settings recorded (the time does not depend on the weights; random-init
backbones, as the issue allows). Then ``python predict.py --ckpt teacher --ckpt student --video V --question Q``
runs as a subprocess ``--repeats`` times: each time is the whole command from process start to exit (imports,
checkpoint loading, decoding, both extractions, both models), printed with the CPU time it used (user + system, all
threads: on a shared machine the wall time grows with the load, this much less), predict's own breakdown and the
load.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from utils.openmp_policy import default_openmp_wait_policy
default_openmp_wait_policy()  # before torch loads; see utils/openmp_policy.py

import argparse
import json
import os
import resource
import subprocess
import time

from bench import BenchError
from utils.cli import exit_on_input_error

REPO = Path(__file__).resolve().parent.parent
PAPER = {"teacher": "configs/msvd_qa_teacher.yml", "student": "configs/msvd_qa_student.yml",
         "appearance": ("resnet101", 16, None, True), "motion": ("resnext101", 16, None, True), "clips": 8,
         "video": {"size": 240, "frames": 300}, "vocab": (4000, 1002)}


def demo_setting() -> dict:
    """The demo's extraction (its two feature stages' commands in demo.py) and configs."""
    import demo
    stages = demo.build_stages(argparse.Namespace(num_videos=200, seed=0, device="cpu", jobs=1, seeds=[0]))
    setting = {"teacher": "configs/demo.yml", "student": demo.STUDENT_CONFIG, "video": {"size": 64, "frames": 24},
               "vocab": None}
    for kind in ("appearance", "motion"):
        command = next(s for s in stages if s.name == f"{kind}_features").command
        value = lambda flag, default=None: command[command.index(flag) + 1] if flag in command else default  # noqa
        height = value("--image_height")
        setting[kind] = (value("--model"), int(value("--num_frames", 16)), int(height) if height else None,
                         "--random_init" in command)
        setting["clips"] = int(value("--num_clips"))
    return setting


def write_inputs(setting: dict, out: Path) -> tuple[list[Path], Path, str, Path]:
    """(checkpoints [teacher, student], vocabulary, question, video) for the setting under ``out``."""
    import torch

    from inference.extraction import settings_from_flags
    from preprocess.synthetic.msvd_qa import SyntheticSpec, generate
    from preprocess.text import tokenize_question
    from training.checkpoint import vocab_fingerprint
    from utils.config import to_dict
    from training.run_schema import load_config

    raw = out / "raw"
    generate(raw, SyntheticSpec(num_videos=3, questions_per_video=4, **setting["video"]), show_progress=False)
    question = json.loads((raw / "train_qa.json").read_text())[0]
    name = dict(line.split()[::-1] for line in (raw / "youtube_mapping.txt").read_text().splitlines())
    video = raw / "YouTubeClips" / f"{name['vid' + str(question['video_id'])]}.avi"
    tokens = ["<NULL>", "<UNK>", *dict.fromkeys(tokenize_question(question["question"]))]
    answers = ["<UNK0>", "<UNK1>", question["answer"]]
    if setting["vocab"]:
        tokens += [f"word{i}" for i in range(setting["vocab"][0] - len(tokens))]
        answers += [f"answer{i}" for i in range(setting["vocab"][1] - len(answers))]
    else:
        answers = list(dict.fromkeys(answers + ["red", "blue", "green", "left", "right"]))
    vocab = {"question_token_to_idx": {t: i for i, t in enumerate(tokens)},
             "answer_token_to_idx": {a: i for i, a in enumerate(answers)},
             "question_answer_token_to_idx": {"<NULL>": 0, "<UNK>": 1}}
    vocab_path = out / "vocab.json"
    vocab_path.write_text(json.dumps(vocab))
    (app, app_frames, app_size, app_random), (mot, mot_frames, mot_size, mot_random) = (setting["appearance"],
                                                                                      setting["motion"])
    random_init = [kind for kind, random in (("appearance", app_random), ("motion", mot_random)) if random]
    flags = argparse.Namespace(appearance_model=app, motion_model=mot, seed=666, num_clips=setting["clips"],
                               num_frames=app_frames, motion_frames=mot_frames, random_init=random_init or None,
                               appearance_size=(app_size,) * 2 if app_size else None,
                               motion_size=(mot_size,) * 2 if mot_size else None, motion_input=None,
                               appearance_weights=None, motion_weights=None)
    extraction = settings_from_flags(flags)
    paths = []
    from model import build_model
    for role in ("teacher", "student"):
        cfg = load_config(setting[role], [f"dataset.vocab_json={vocab_path}", "model.head=open_ended",
                                          "model.glove=false"])
        dims = {key: extraction[kind]["feature_dim"] for key, kind in (("appearance_dim", "appearance"),
                                                                          ("motion_dim", "motion"))}
        if "appearance_dim" in cfg.model:  # models with a width per stream
            cfg.model.update(dims)
        else:
            cfg.model.vision_dim = dims["appearance_dim"]
        torch.manual_seed(0)
        model = build_model(cfg.model, len(tokens), len(answers))
        ckpt = {"format_version": 2, "model": model.state_dict(), "model_config": {"name": cfg.model.name,
                                                                                   **to_dict(cfg.model)},
                "config": to_dict(cfg), "mode": role, "vocab_fingerprint": vocab_fingerprint(vocab),
                "num_question_tokens": len(tokens), "num_answers": len(answers), "num_clips": setting["clips"],
                "frames_per_clip": app_frames, **dims, "answer_type": "open_ended", "dataset": "msvd-qa",
                "extraction": extraction}
        paths.append(out / f"{role}.pt")
        torch.save(ckpt, paths[-1])
    return paths, vocab_path, question["question"], video


def main(argv: list[str] | None = None) -> int:
    try:
        run(argv)
    except Exception as e:  # bad input or a failed predict.py: one line and exit code 2 (utils/cli.py)
        return exit_on_input_error(e)
    return 0


def run(argv: list[str] | None = None) -> None:
    """Parse ``argv``, write the inputs and time predict.py on them."""
    parser = argparse.ArgumentParser(prog="python bench/predict.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--setting", choices=("paper", "demo"), default="paper", help="backbones, sizes, configs")
    parser.add_argument("--dir", default="/tmp/kdvqa_bench_predict", help="where the inputs are written")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of the command")
    parser.add_argument("--explain", action="store_true", help="time predict.py --explain (the pictures) too")
    args = parser.parse_args(argv)
    setting = PAPER if args.setting == "paper" else demo_setting()
    out = Path(args.dir) / args.setting
    (ckpts, vocab, question, video) = write_inputs(setting, out)
    command = [sys.executable, str(REPO / "predict.py"), "--ckpt", str(ckpts[0]), "--ckpt", str(ckpts[1]),
               "--names", "Teacher", "Student", "--vocab", str(vocab), "--video", str(video), "--question", question]
    if args.explain:
        command += ["--explain", str(out / "explain")]
    print(f"setting {args.setting}: {json.dumps({k: v for k, v in setting.items() if k != 'vocab'})}")
    print("command: " + " ".join(command[1:]))
    for repeat in range(args.repeats):
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
        seconds = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if result.returncode:
            raise BenchError(f"predict.py failed ({result.returncode}): {(result.stderr.strip().splitlines() or ['no output'])[-1]}")
        breakdown = next((line.strip() for line in result.stdout.splitlines() if line.strip().startswith("time:")), "")
        print(f"run {repeat + 1}: {seconds:.2f} s wall, process start to exit, {cpu:.2f} s CPU (user + system) "
              f"({breakdown}; load before: {load})")


if __name__ == "__main__":
    sys.exit(main())
