"""Answer questions about a video with one or more checkpoints, and show where their attention went.

    python predict.py --ckpt results/demo/sweep/teacher__seed0/best.pt --video clip.mp4 --question "what is moving?"
    python predict.py --ckpt teacher.pt --ckpt student_kd.pt --names Teacher Student-KD --video clip.mp4 \\
        --question "what is moving?" --explain explain/
    python predict.py --ckpt best.pt --split test --question_id 12 13          # stored features (= validate.py)
    python predict.py --ckpt best.pt --rows questions.jsonl --out answers.jsonl  # many (video, question) rows

A video is decoded and its features extracted with the settings the checkpoint recorded (backbones, weights' sha256,
clips, frames, size, normalisation: the feature files' attributes), through the preprocessing's own code; the question
is tokenised as the question files are. Bad input (no video, an undecodable or too-short video, an empty question, a
checkpoint from another vocabulary or other features) gets one line and exit code 2.
"""
from __future__ import annotations

from utils.openmp_policy import default_openmp_wait_policy
default_openmp_wait_policy()  # before torch loads; see utils/openmp_policy.py

import argparse
import json
import sys
import time
from pathlib import Path

EXPLAIN_HELP = ("write per question a PNG and a self-contained HTML page into DIR: a frame of each clip, the answer "
                "distribution, the question-word attention, each graph layer's attention over clips (appearance, "
                "motion), the readout's attention; for two checkpoints also the second minus the first")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python predict.py", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", action="append", required=True, metavar="PATH",
                        help="a checkpoint (best.pt); give it several times to answer side by side (e.g. teacher and "
                             "distilled student)")
    parser.add_argument("--names", nargs="+", metavar="NAME",
                        help="one display name per --ckpt (default: the run folder names, as validate.py --compare)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--video", metavar="FILE", help="a video file to ask about (with --question)")
    source.add_argument("--split", choices=("val", "test"),
                        help="answer stored questions of this split from the stored features (with --question_id); "
                             "the answers equal validate.py --write_preds")
    source.add_argument("--rows", metavar="FILE",
                        help="many questions: a JSON-lines file of {\"video\": path, \"question\": text[, "
                             "\"candidates\": [...]]} (relative video paths from the file's folder); answers go out "
                             "as JSON lines (--out, else stdout)")
    parser.add_argument("--question", help="the question (with --video); a missing '?' is added")
    parser.add_argument("--candidates", nargs="+", metavar="TEXT",
                        help="multiple-choice checkpoints: the answer candidates, as many as the model was trained with")
    parser.add_argument("--question_id", nargs="+", type=int, metavar="N", help="with --split: question ids")
    parser.add_argument("--top_k", type=int, default=5, help="open-ended: how many answers to print")
    parser.add_argument("--explain", metavar="DIR", help=EXPLAIN_HELP)
    parser.add_argument("--out", metavar="FILE", help="write the answers as JSON lines to FILE")
    parser.add_argument("--vocab", metavar="FILE",
                        help="the vocabulary JSON (default: the one the checkpoint's config names); refused unless "
                             "it is the one the checkpoint was trained on (fingerprint)")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="override a key of the checkpoints' stored configs (e.g. dataset.data_dir=DIR when the "
                             "data moved); repeatable")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | auto (default cpu)")
    parser.add_argument("--channels_last", choices=("on", "off"), default="on",
                        help="run the backbones in the channels-last memory layout (the preprocessing's option; on "
                             "the CPU 1.3-1.6x faster for ResNet-101 here; the features then equal the stored ones "
                             "up to float rounding, as the preprocessing's own CPU/GPU layouts do)")
    parser.add_argument("--fold_batchnorm", choices=("on", "off"), default="on",
                        help="fold each BatchNorm of the backbones into the convolution before it (the same "
                             "function up to float rounding, about 15%% less time for ResNet-101 here); with "
                             "--channels_last off and --fold_batchnorm off the features equal the stored ones bit "
                             "for bit")
    extraction = parser.add_argument_group(
        "extraction (only for checkpoints written before extraction settings were recorded; otherwise checked "
        "against the recorded ones)")
    extraction.add_argument("--appearance_feat", metavar="FILE.h5",
                            help="the appearance feature file the checkpoint was trained on: its attributes say how "
                                 "to extract (give --motion_feat too)")
    extraction.add_argument("--motion_feat", metavar="FILE.h5", help="the motion feature file, likewise")
    extraction.add_argument("--appearance_model", metavar="NAME",
                            help="or the extraction flags: the appearance backbone (preprocess/backbones/)")
    extraction.add_argument("--motion_model", metavar="NAME", help="the motion backbone")
    extraction.add_argument("--appearance_weights", metavar="FILE",
                            help="appearance weights (default: the backbone's file in data/weights/); also used with "
                                 "recorded settings, checked against their sha256")
    extraction.add_argument("--motion_weights", metavar="FILE", help="motion weights, likewise")
    extraction.add_argument("--random_init", nargs="*", choices=("appearance", "motion"), metavar="KIND",
                            help="random-init backbones (seeded by --seed), without BatchNorm recalibration: both, or "
                                 "the kinds named (e.g. --random_init motion)")
    extraction.add_argument("--seed", type=int, default=666, help="random-init seed (preprocessing's default)")
    extraction.add_argument("--num_clips", type=int, help="clips per video")
    extraction.add_argument("--num_frames", type=int, default=16, help="frames per clip")
    extraction.add_argument("--motion_frames", type=int,
                            help="frames per motion clip where they differ from --num_frames (the demo's do)")
    extraction.add_argument("--appearance_size", type=int, nargs=2, metavar=("H", "W"),
                            help="appearance input size (default: the backbone's)")
    extraction.add_argument("--motion_size", type=int, nargs=2, metavar=("H", "W"),
                            help="motion input size (default: the backbone's)")
    extraction.add_argument("--motion_input", help="the motion backbone's input normalisation (default: its first)")
    return parser


# ------------------------------------------------------------------------------------------ the run


class Run:
    """Checkpoints loaded once; answers questions about videos or stored questions."""

    def __init__(self, args: argparse.Namespace):
        from inference import PredictError
        from model.cpu_ops import set_cpu_fast_path
        from training.evaluation import default_names
        from inference.models import load_predictor
        from utils.device import resolve_device

        self.args = args
        names = args.names or default_names(args.ckpt)
        if len(names) != len(args.ckpt):
            raise PredictError(f"--names gives {len(names)} names for {len(args.ckpt)} checkpoints")
        if len(set(names)) != len(names):
            raise PredictError("--names must all differ")
        try:
            device = resolve_device(args.device)
        except ValueError as e:
            raise PredictError(f"--device: {e}") from None
        self.predictors = [load_predictor(path, name, device, args.vocab, args.override)
                           for path, name in zip(args.ckpt, names)]
        set_cpu_fast_path(self.predictors[0].cfg.model.cpu_fast_path)
        heads = {p.head for p in self.predictors}
        if len(heads) > 1:
            raise PredictError(f"the checkpoints have different answer heads ({', '.join(sorted(heads))})")
        self.head = heads.pop()
        self.extractors = {}
        self.last_video, self.features = None, {}

    # ---------------------------------------------------------------- videos
    def _given_settings(self):
        """Extraction settings from --appearance_feat/--motion_feat or the flags (None when neither is given),
        and what gave them; worked out once."""
        if not hasattr(self, "_given"):
            self._given = self._read_given_settings()
        return self._given

    def _read_given_settings(self):
        from inference import PredictError
        from inference.extraction import settings_from_flags
        from training.data import read_extraction_settings
        args = self.args
        if args.appearance_feat or args.motion_feat:
            if not (args.appearance_feat and args.motion_feat):
                raise PredictError("give both --appearance_feat and --motion_feat")
            for flag in ("appearance_feat", "motion_feat"):
                if not Path(getattr(args, flag)).is_file():
                    raise PredictError(f"--{flag} {getattr(args, flag)}: file not found")
            try:
                return read_extraction_settings(Path(args.appearance_feat), Path(args.motion_feat)), \
                    f"{args.appearance_feat} and {args.motion_feat}"
            except OSError as e:
                raise PredictError(f"--appearance_feat/--motion_feat: not readable HDF5 files ({e})") from None
        if args.appearance_model or args.motion_model:
            if not (args.appearance_model and args.motion_model and args.num_clips):
                raise PredictError("the extraction flags need --appearance_model, --motion_model and --num_clips")
            return settings_from_flags(args), "the extraction flags"
        return None, ""

    def _extractor_for(self, predictor):
        """The (shared) video extractor of a checkpoint's extraction settings, checked against its model."""
        from inference import PredictError
        from inference.extraction import KINDS, VideoExtractor, resolve_settings, settings_key
        given, source = self._given_settings()
        settings = resolve_settings(predictor.extraction, given, predictor.path, source)
        ckpt = predictor.ckpt
        expected = {"appearance_dim": ("appearance", "feature_dim"), "motion_dim": ("motion", "feature_dim"),
                    "num_clips": ("appearance", "num_clips"), "frames_per_clip": ("appearance", "num_frames")}
        for key, (kind, attr) in expected.items():
            value = settings[kind].get(attr)
            if attr == "feature_dim" and value is None:
                from preprocess.backbones import get_backbone
                value = get_backbone(settings[kind]["model"]).feature_dim
            if key in ckpt and value is not None and int(value) != int(ckpt[key]):
                raise PredictError(f"checkpoint {predictor.path} reads {key} {ckpt[key]}, but the {kind} extraction "
                                   f"({settings[kind]['model']}) gives {attr} {value}: another backbone or settings "
                                   "than the checkpoint's features")
        key = settings_key(settings)
        if key not in self.extractors:
            weights = {kind: getattr(self.args, f"{kind}_weights") for kind in KINDS}
            self.extractors[key] = VideoExtractor(settings, predictor.device, weights,
                                                  channels_last=self.args.channels_last == "on",
                                                  fold_norms=self.args.fold_batchnorm == "on")
        return self.extractors[key]

    def answer_video(self, video: str, question: str, candidates, source: str = "--question") -> tuple[list, dict]:
        """Every checkpoint's answer about ``video``; (answers, timing and question info)."""
        from inference.answering import answer_batch, question_batch
        from inference.questions import encode_question
        if self.last_video != video:  # consecutive questions about one video (rows files) share its features
            self.last_video, self.features = video, {}
        features, encoded, answers, seconds = self.features, None, [], {}
        for predictor in self.predictors:
            extractor = self._extractor_for(predictor)
            encoded = encode_question(question, predictor.embedding_vocab, predictor.head, candidates,
                                      predictor.ckpt["num_answers"], source)
            if id(extractor) not in features:
                start = time.perf_counter()
                features[id(extractor)] = extractor(video)
                seconds["features"] = seconds.get("features", 0.0) + time.perf_counter() - start
            video_features = features[id(extractor)]
            batch = question_batch([encoded], video_features.appearance, video_features.motion, [0])
            start = time.perf_counter()
            texts = [[text for text, _, _ in encoded.candidates]] if encoded.candidates else None
            answers += answer_batch(predictor, batch, texts, explain=bool(self.args.explain))
            seconds[predictor.name] = time.perf_counter() - start
        info = {"video": str(video), "question": encoded.text, "tokens": encoded.tokens,
                "unknown_words": encoded.unknown + encoded.unknown_in_candidates, "seconds": seconds,
                "frames": next(iter(features.values())).frames,
                "decoded_frames": next(iter(features.values())).num_frames}
        return answers, info

    # ---------------------------------------------------------------- stored questions
    def answer_stored(self, split: str, question_ids: list[int]) -> list[tuple[list, dict]]:
        """Stored questions of ``split`` from the stored features, as validate.py reads them."""
        import numpy as np

        from inference import PredictError
        from inference.answering import answer_batch
        from inference.extraction import differences, has_settings
        from training.checkpoint import check_against_data
        from training.evaluation import SplitEvaluator
        evaluator = SplitEvaluator(self.predictors[0].cfg, split)
        try:
            questions = evaluator.questions
            position = {int(q): i for i, q in enumerate(questions.question_ids)}
            missing = [q for q in question_ids if q not in position]
            if missing:
                raise PredictError(f"--question_id: {', '.join(map(str, missing))} not in the {split} split "
                                   f"({questions.path})")
            indices = np.array([position[q] for q in question_ids], dtype=np.int64)
            batch = evaluator.bundle.dataset(split)[indices]
            texts, answer_text = evaluator.question_texts(), evaluator.answer_texts()
            candidates = evaluator.candidate_texts()
            per_model = []
            for predictor in self.predictors:
                check_against_data(predictor.ckpt, evaluator.bundle.signature, predictor.path, "--ckpt")
                stored = evaluator.bundle.extraction
                if has_settings(predictor.extraction) and has_settings(stored):
                    found = differences(predictor.extraction, stored)
                    if found:
                        raise PredictError(f"checkpoint {predictor.path} was trained on features made otherwise than "
                                           f"the {split} split's feature files: " + "; ".join(found))
                per_model.append(answer_batch(predictor, batch, [candidates[i] for i in indices] if candidates else None,
                                              explain=bool(self.args.explain)))
            results = []
            for row, i in enumerate(indices.tolist()):
                tokens = texts[i].split()
                info = {"split": split, "question_id": int(questions.question_ids[i]),
                        "video_id": int(questions.video_ids[i]), "question": texts[i], "tokens": tokens,
                        "unknown_words": [t for t in tokens if t == "<UNK>"],
                        "answer": answer_text(i, int(questions.answers[i])), "frames": None}
                results.append(([answers[row] for answers in per_model], info))
            return results
        finally:
            evaluator.close()


# ------------------------------------------------------------------------------------------ output


def record(answers: list, info: dict, top_k: int) -> dict:
    """One JSON line: the question and each checkpoint's answer."""
    out = {key: value for key, value in info.items() if key not in ("frames", "tokens")}
    out["answers"] = [a.to_dict(top_k) for a in answers]
    return out


def print_answers(answers: list, info: dict, top_k: int) -> None:
    from model.heads import get_head
    where = info.get("video") or f"{info['split']} question {info['question_id']} (video {info['video_id']})"
    print(f"{where}\nQ: {info['question']}" + (f"   [ground truth: {info['answer']}]" if "answer" in info else ""))
    if info.get("unknown_words"):
        print(f"   not in the vocabulary (read as <UNK>): {', '.join(info['unknown_words'])}")
    for answer in answers:
        print(f"  {answer.model}: {get_head(answer.head).describe(answer, top_k)}")
    if "seconds" in info:
        parts = ", ".join(f"{k} {v:.2f} s" for k, v in info["seconds"].items())
        print(f"  time: {parts}")


def explain(answers: list, info: dict, directory: Path, stem: str, top_k: int) -> Path:
    from inference.explain import Explained, write_explanation
    title = " vs ".join(a.model for a in answers) + f": {Path(info['video']).name if info.get('video') else stem}"
    png, _ = write_explanation(Explained(title, info["question"], info["tokens"], info.get("unknown_words", []),
                                         info.get("frames"), answers, info.get("answer")),
                               directory, stem, max(top_k, 5))
    return png


def _read_rows(path: Path) -> list[dict]:
    """The --rows file's rows; PredictError naming the line for a malformed one."""
    from inference import PredictError
    if not path.is_file():
        raise PredictError(f"--rows {path}: file not found")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise PredictError(f"{path}:{number}: not JSON ({e.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("video"), str) or not isinstance(row.get("question"), str):
            raise PredictError(f"{path}:{number}: expected {{\"video\": path, \"question\": text}}")
        video = Path(row["video"])
        row["video"] = str(video if video.is_absolute() else path.parent / video)
        rows.append({**row, "line": number})
    if not rows:
        raise PredictError(f"--rows {path}: no rows")
    return rows


def run(argv: list[str] | None = None) -> int:
    """Parse, answer, print / write; returns the exit code (2 when a --rows row failed)."""
    from inference import PredictError
    args = build_parser().parse_args(argv)
    if args.video is not None and args.question is None:
        raise PredictError("--video needs --question")
    if args.split is not None and not args.question_id:
        raise PredictError("--split needs --question_id")
    if args.question_id and args.split is None:
        raise PredictError("--question_id goes with --split")
    if args.top_k < 1:
        raise PredictError(f"--top_k must be at least 1, got {args.top_k}")
    rows = _read_rows(Path(args.rows)) if args.rows else None
    runner = Run(args)
    explain_dir = Path(args.explain) if args.explain else None
    out = open(args.out, "w", encoding="utf-8") if args.out else None
    status = 0
    try:
        if args.video is not None:
            results = [(runner.answer_video(args.video, args.question, args.candidates), Path(args.video).stem)]
        elif args.split is not None:
            results = [(r, f"{args.split}_q{r[1]['question_id']}") for r in runner.answer_stored(args.split,
                                                                                              args.question_id)]
        else:
            results = []
            for row in rows:
                try:
                    answered = runner.answer_video(row["video"], row["question"], row.get("candidates"),
                                                   f"{args.rows}:{row['line']}")
                except PredictError as e:
                    status = 2
                    line = json.dumps({"line": row["line"], "video": row["video"], "error": str(e)}, ensure_ascii=False)
                    print(line, file=out or sys.stdout, flush=True)
                    print(f"error: {args.rows}:{row['line']}: {e}", file=sys.stderr)
                    continue
                results.append((answered, f"row{row['line']}_{Path(row['video']).stem}"))
                print(json.dumps({"line": row["line"], **record(*answered, args.top_k)}, ensure_ascii=False),
                      file=out or sys.stdout, flush=True)
        for (answers, info), stem in results:
            if rows is None:
                print_answers(answers, info, args.top_k)
                if out:
                    print(json.dumps(record(answers, info, args.top_k), ensure_ascii=False), file=out)
            if explain_dir:
                print(f"  picture: {explain(answers, info, explain_dir, stem, args.top_k)} (+ .html)")
    finally:
        if out:
            out.close()
    return status


def main(argv: list[str] | None = None) -> int:
    from utils.cli import exit_on_input_error
    try:
        return run(argv)
    except Exception as e:  # input or environment: one line and exit code 2 (utils/cli.py); a bug: its traceback
        return exit_on_input_error(e)


if __name__ == "__main__":
    sys.exit(main())
