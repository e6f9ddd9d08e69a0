"""Per-part parameter table of the model a config builds.

    python -m model.summary --cfg configs/msvd_qa_teacher.yml --question_tokens 4000 --answers 1002
    python -m model.summary --cfg configs/msvd_qa_student.yml --vocab data/msvd-qa/msvd-qa_vocab.json

The answer head is the config's ``model.head`` (auto: the dataset's answer type). With a vocabulary file, V is the
embedding vocabulary (question_answer_token_to_idx for multiple choice) and A the head's outputs (the answers,
the dataset's K candidates, or 1 for count).

The model is the one ``model.name`` selects (model/registry.py), built on the ``meta`` device: no memory is allocated and no weights are initialised, so even the
largest config counts in well under a second. The last line is always ``trainable parameters: N`` with N written
with comma thousands separators (e.g. ``trainable parameters: 23,189,116``).
"""
from __future__ import annotations

from utils.openmp_policy import default_openmp_wait_policy
default_openmp_wait_policy()  # before torch loads; see utils/openmp_policy.py

import argparse
import sys
from pathlib import Path

import torch
from termcolor import colored

from model.heads import get_head
from model.network import VideoQAModel
from model.params import count_parameters as count
from model.registry import build_model, model_config
from model.schema import MODEL_SCHEMA
from preprocess.datasets.files import DATASET_SCHEMA, dataset_path, dataset_spec
from preprocess.question_file import QuestionFileError, load_vocab
from utils.cli import exit_on_input_error
from utils.config import REPO_ROOT, add_config_arguments, combine, load_config


def parameter_table(model: torch.nn.Module) -> list[tuple[str, int]]:
    """(part name, trainable parameters) rows that add up to the model's total: the DualVGR network's parts in
    forward order, or the top-level submodules of any other registered model."""
    if not isinstance(model, VideoQAModel):
        rows = [(name, count(child)) for name, child in model.named_children()]
        own = count(model) - sum(n for _, n in rows)
        return rows + ([("(own parameters)", own)] if own else [])
    encoder = model.question_encoder
    rows = [("word embedding", count(encoder.embedding)),
            ("contextual-word BiLSTM", count(encoder.contextual)),
            ("sentence BiLSTM", count(encoder.sentence)),
            ("appearance encoder (BiLSTM)", count(model.appearance_encoder)),
            ("motion encoder (Linear)", count(model.motion_encoder))]
    for i, unit in enumerate(model.units.units):
        rows.append((f"unit {i}: question attention + clip scores",
                     count(unit.question_attention) + count(unit.appearance_scores) + count(unit.motion_scores)))
        for j, layer in enumerate(unit.graph_layers):
            index = i * len(unit.graph_layers) + j
            rows.append((f"unit {i}: graph layer {j} (4 GAT blocks, index {index})", count(layer)))
        rows.append((f"unit {i}: independent/joint fusion",
                     count(unit.appearance_fusion) + count(unit.motion_fusion)))
    head = get_head(model.head)
    rows += [("MFB fusion", count(model.mfb)), (head.readout_label, count(model.readout)),
             (head.output_label, count(model.classifier))]
    return rows


def vocabulary_sizes(path: Path, head: str = "open_ended", num_candidates: int = 0) -> tuple[int, int]:
    """(V, A) from a vocabulary JSON: V the embedding vocabulary (``question_answer_token_to_idx`` for multiple
    choice, else ``question_token_to_idx``), A ``len(answer_token_to_idx)`` (open-ended), ``num_candidates``
    (multiple choice) or 1 (count)."""
    try:
        vocab = load_vocab(path)
    except FileNotFoundError:
        raise QuestionFileError(f"vocabulary file not found: {path} (or give --question_tokens V --answers A)") \
            from None
    answer_head = get_head(head)
    num_outputs = answer_head.num_outputs(len(vocab["answer_token_to_idx"]), num_candidates)
    return len(vocab[answer_head.embedding_key()]), num_outputs


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m model.summary",
        description="Print the trainable parameters of each part of the model a config builds. The last line is "
                    "'trainable parameters: N', N with comma thousands separators (e.g. 23,189,116).")
    add_config_arguments(parser)
    parser.add_argument("--vocab", metavar="VOCAB_JSON",
                        help="vocabulary JSON giving V = len(question_token_to_idx) and A = "
                             "len(answer_token_to_idx); default: the config's dataset.data_dir/dataset.vocab_json")
    parser.add_argument("--question_tokens", type=int, metavar="V",
                        help="question vocabulary size V (use with --answers instead of a vocabulary file)")
    parser.add_argument("--question-tokens", type=int, dest="question_tokens", help=argparse.SUPPRESS)  # old name
    parser.add_argument("--answers", type=int, metavar="A",
                        help="number of answer classes A (use with --question_tokens)")
    args = parser.parse_args(argv)
    if (args.question_tokens is None) != (args.answers is None):
        parser.error("--question_tokens and --answers go together")
    if args.vocab is not None and args.question_tokens is not None:
        parser.error("give either --vocab or --question_tokens/--answers, not both")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        return print_summary(args)
    except Exception as e:  # bad input (config, vocabulary, model config): one line and exit code 2 (utils/cli.py)
        raise SystemExit(exit_on_input_error(e)) from None


def print_summary(args: argparse.Namespace) -> int:
    """Build the model ``args`` describe on the meta device and print its parameter table; returns 0."""
    cfg = load_config(args.cfg, args.overrides, schema=combine(MODEL_SCHEMA, DATASET_SCHEMA))
    if cfg.model.get("head") == "auto":  # the dataset's answer type, as when a run starts (training/run_settings.py)
        cfg.model.head = dataset_spec(cfg).answer_type
    if args.question_tokens is not None:
        num_tokens, num_answers = args.question_tokens, args.answers
    else:
        vocab = Path(args.vocab) if args.vocab else dataset_path(cfg, "vocab_json")
        num_candidates = dataset_spec(cfg).num_candidates
        if not vocab.is_absolute() and not vocab.exists():
            vocab = REPO_ROOT / vocab
        num_tokens, num_answers = vocabulary_sizes(vocab, cfg.model.get("head", "open_ended"), num_candidates)
    with torch.device("meta"):
        model = build_model(cfg.model, num_question_tokens=num_tokens, num_answers=num_answers)
    rows = parameter_table(model)
    fields = " ".join(f"{k}={v}" for k, v in vars(model_config(cfg.model)).items()
                      if not hasattr(v, "__dataclass_fields__"))
    total = count(model)
    if sum(n for _, n in rows) != total:
        raise RuntimeError("model.summary: the parameter table misses a part of the model")
    print(colored(f"{cfg.model.name}: V={num_tokens} A={num_answers} {fields}", "cyan"))
    width = max(len(name) for name, _ in rows)
    for name, n in rows:
        print(f"  {name:<{width}}  {n:>12,}")
    print(f"trainable parameters: {total:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
