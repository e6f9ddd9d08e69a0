"""The runs of a sweep (sweep.py): teacher(s), plain students and distilled students over grid points and seeds.

Every run is one train.py command line with its own run folder under the sweep's output folder. Names:
    folder  <model>[__<grid point>]__seed<S>   e.g. student_kd__distill.lambda_motion=10__seed1
    model   Teacher | Student[<point>] | Student-KD[<point>]   (the summary's model names; no brackets without a grid)
A plain student does not depend on ``distill.*`` keys, so the grid keys outside ``distill.`` alone name it and
one plain student serves every grid point that differs only in ``distill.*`` values.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path

from utils.config import ConfigError, parse_override
from training.run_schema import load_config
from utils.strict_yaml import StrictYAMLError, load_yaml
from utils.text import short_repr

TEACHER, STUDENT, KD = "teacher", "student", "kd"
FOLDER_PREFIX = {TEACHER: "teacher", STUDENT: "student", KD: "student_kd"}
DISPLAY = {TEACHER: "Teacher", STUDENT: "Student", KD: "Student-KD"}
RESERVED_KEYS = {"exp_name": "the sweep names run folders itself", "seed": "use --seeds",
                 "dataset.save_dir": "use --out", "train.mode": "the sweep sets it per run",
                 "distill.teacher_ckpt": "use --teacher_ckpt"}
FINISHED, INTERRUPTED, NEW = "finished", "interrupted", "new"


class SweepError(ValueError):
    """Bad sweep arguments, or runs that failed; the message names the flag, file or run."""


@dataclass(frozen=True)
class Run:
    """One training run of the sweep. ``settings``: grid values applied to it (KEY -> value as given)."""
    kind: str                  # TEACHER | STUDENT | KD
    folder: str                # run folder name under the sweep's output folder
    model: str                 # the summary's model name
    seed: int
    settings: dict = field(default_factory=dict)
    train_args: tuple = ()     # train.py arguments (without --resume)
    teacher_folder: str | None = None  # the sweep's teacher run this one waits for (KD runs with a trained teacher)


@dataclass
class Plan:
    """All runs of a sweep, in launch order: ``teachers`` first (students depend on them), then ``students``."""
    out: Path
    seeds: list[int]
    teachers: list[Run]
    students: list[Run]
    teacher_ckpt: Path | None  # an existing teacher checkpoint (--teacher_ckpt) instead of trained teachers
    pairs: list[tuple[str, str]]  # (model a, model b) for the paired tests

    @property
    def runs(self) -> list[Run]:
        return self.teachers + self.students


def parse_grid(specs: list[str]) -> list[tuple[str, list[str]]]:
    """``["a.b=1,2", "c=x"]`` -> [("a.b", ["1", "2"]), ("c", ["x"])]; raises SweepError on a malformed entry."""
    grid = []
    for spec in specs:
        key, sep, values = spec.partition("=")
        key = key.strip()
        items = [v.strip() for v in values.split(",")]
        if not sep or not key or not all(items):
            raise SweepError(f"--grid {spec!r}: expected KEY=V1,V2,... (e.g. distill.lambda_motion=1,10,100)")
        if key in (k for k, _ in grid):
            raise SweepError(f"--grid names '{key}' twice")
        if key in RESERVED_KEYS:
            raise SweepError(f"--grid cannot vary '{key}': {RESERVED_KEYS[key]}")
        grid.append((key, items))
    return grid


def grid_points(grid: list[tuple[str, list[str]]]) -> list[dict[str, str]]:
    """Every combination of grid values, the last key varying fastest; [{}] for no grid."""
    keys = [k for k, _ in grid]
    return [dict(zip(keys, values)) for values in itertools.product(*(v for _, v in grid))]


def point_label(point: dict[str, str]) -> str:
    """``{"a": "1", "b": "2"}`` -> ``a=1,b=2`` (empty for no grid)."""
    return ",".join(f"{k}={v}" for k, v in point.items())


def student_point(point: dict[str, str]) -> dict[str, str]:
    """The part of a grid point a plain student depends on: every key outside ``distill.``."""
    return {k: v for k, v in point.items() if not k.startswith("distill.")}


def run_folder(kind: str, point: dict[str, str], seed: int) -> str:
    """The run folder name; characters other than letters, digits and ``._=,+-`` become ``-``."""
    label = point_label(point)
    name = FOLDER_PREFIX[kind] + (f"__{label}" if label else "") + f"__seed{seed}"
    return re.sub(r"[^A-Za-z0-9._=,+-]", "-", name)


def model_name(kind: str, point: dict[str, str]) -> str:
    label = point_label(point)
    return DISPLAY[kind] + (f"[{label}]" if label else "")


def teacher_config(student_cfg: Path) -> Path:
    """The ``_base_`` file the student config names (the teacher's config, e.g. msvd_qa_student -> msvd_qa_teacher)."""
    try:
        data = load_yaml(student_cfg.read_bytes()) or {}
    except (OSError, StrictYAMLError) as e:
        raise SweepError(f"--cfg {student_cfg}: cannot read it ({getattr(e, 'strerror', None) or e})") from None
    base = data.get("_base_") if isinstance(data, dict) else None
    if not base:
        raise SweepError(f"--cfg {student_cfg} names no _base_ (teacher) config: pass --teacher_cfg FILE or "
                         "--teacher_ckpt PATH")
    return student_cfg.parent / base


def check_overrides(cfg: Path, overrides: list[str], grid: list[tuple[str, list[str]]]) -> None:
    """Fail early, naming the key, on an override or grid value the config rejects or the sweep reserves."""
    for text in overrides:
        key = ".".join(parse_override(text)[0])
        if key in RESERVED_KEYS:
            raise SweepError(f"override '{text}': {RESERVED_KEYS[key]}")
    load_config(cfg, overrides)
    for key, values in grid:
        for value in values:
            try:
                load_config(cfg, overrides + [f"{key}={value}"])
            except ConfigError as e:
                raise SweepError(f"--grid {key}: {e}") from None


def _train_args(cfg: Path, folder: str, seed: int, out: Path, overrides: list[str], extra: list[str]) -> tuple:
    return ("--cfg", str(cfg), "--exp_name", folder, "--seed", str(seed), f"dataset.save_dir={out}", *overrides,
            *extra)


def plan_sweep(cfg: Path, seeds: list[int], grid: list[tuple[str, list[str]]], out: Path, overrides: list[str],
               teacher_mode: str = "shared", teacher_cfg: Path | None = None,
               teacher_ckpt: Path | None = None) -> Plan:
    """The runs of a sweep; raises SweepError / ConfigError on bad arguments. ``out`` should be absolute."""
    if not seeds or len(set(seeds)) != len(seeds):
        raise SweepError(f"--seeds must list distinct seeds, got {seeds}")
    check_overrides(cfg, overrides, grid)
    points = grid_points(grid)
    teachers: list[Run] = []
    teacher_of: dict[int, str | None] = {}
    if teacher_ckpt is not None:
        if not teacher_ckpt.is_file():
            raise SweepError(f"--teacher_ckpt {teacher_ckpt}: no such file")
        teacher_of = {seed: None for seed in seeds}
    else:
        tcfg = teacher_cfg or teacher_config(cfg)
        load_config(tcfg, overrides)
        for seed in (seeds if teacher_mode == "per_seed" else seeds[:1]):
            folder = run_folder(TEACHER, {}, seed)
            teachers.append(Run(TEACHER, folder, DISPLAY[TEACHER], seed,
                                train_args=_train_args(tcfg, folder, seed, out, overrides, [])))
        teacher_of = {seed: run_folder(TEACHER, {}, seed if teacher_mode == "per_seed" else seeds[0])
                      for seed in seeds}

    students: dict[str, Run] = {}
    pairs = []
    for point in points:
        plain = student_point(point)
        grid_args = [f"{k}={v}" for k, v in point.items()]
        plain_args = [f"{k}={v}" for k, v in plain.items()]
        for seed in seeds:
            folder = run_folder(STUDENT, plain, seed)
            students.setdefault(folder, Run(STUDENT, folder, model_name(STUDENT, plain), seed, plain, _train_args(
                cfg, folder, seed, out, overrides, plain_args + ["train.mode=student"])))
            folder = run_folder(KD, point, seed)
            ckpt = teacher_ckpt if teacher_of[seed] is None else out / teacher_of[seed] / "best.pt"
            students[folder] = Run(KD, folder, model_name(KD, point), seed, point, _train_args(
                cfg, folder, seed, out, overrides, grid_args + ["train.mode=kd", "--teacher_ckpt", str(ckpt)]),
                teacher_of[seed])
        pairs += [(model_name(KD, point), model_name(STUDENT, plain)), (model_name(KD, point), DISPLAY[TEACHER])]
    ordered = sorted(students.values(), key=lambda r: r.kind != STUDENT)  # plain students first, then distilled
    return Plan(out, list(seeds), teachers, ordered, teacher_ckpt, pairs)


def run_state(run_dir: Path) -> str:
    """FINISHED (test_results.json written), INTERRUPTED (last.pt, no test results) or NEW."""
    if (run_dir / "test_results.json").is_file():
        return FINISHED
    if (run_dir / "last.pt").is_file():
        return INTERRUPTED
    return NEW


def prepare(run: Run, out: Path) -> list[str] | None:
    """The train.py arguments that complete ``run``: None when finished (:func:`check_finished_runs` checks that
    it was trained with the settings planned now), with --resume when interrupted (train.py refuses changed
    settings there). A folder without last.pt is never deleted: train.py starts in it, and refuses it when another
    run holds its lock."""
    run_dir = out / run.folder
    state = run_state(run_dir)
    if state == FINISHED:
        return None
    if state == INTERRUPTED:
        return [*run.train_args, "--resume"]
    return list(run.train_args)


# Keys that may differ between a finished run and the sweep now: where files are and how fast data loads.
MAY_DIFFER = ("exp_name", "device", "dataset.save_dir", "dataset.data_dir", "dataset.num_workers",
              "dataset.features_in_memory")


def _comparable(cfg: dict) -> dict:
    """A run's resolved config, flattened, without MAY_DIFFER keys; a teacher checkpoint inside the run's
    save_dir (the sweep's own teacher) as a path relative to it, so that a moved sweep folder compares equal."""
    from training.run_checks import flatten
    flat = flatten(cfg)
    teacher, save_dir = flat.get("distill.teacher_ckpt"), flat.get("dataset.save_dir")
    if isinstance(teacher, str) and isinstance(save_dir, str):
        try:
            flat["distill.teacher_ckpt"] = "<sweep folder>/" + Path(teacher).relative_to(save_dir).as_posix()
        except ValueError:
            pass
    return {k: v for k, v in flat.items() if k not in MAY_DIFFER}


def planned_config(run: Run) -> dict:
    """The resolved config train.py would run ``run`` with (its config file, overrides and flags; the feature widths
    a run reads from its feature files when it starts)."""
    from training import train_command
    from training.run_settings import resolve_feature_dims
    from utils.config import to_dict
    cfg = train_command.config_from_args(train_command.build_parser().parse_intermixed_args(list(run.train_args)))
    resolve_feature_dims(cfg)
    return to_dict(cfg)


def check_finished_settings(run: Run, run_dir: Path) -> None:
    """SweepError naming the keys (there vs now) when the finished run in ``run_dir`` was trained with other
    settings than the sweep plans for it now (another model size, epochs, teacher...): its results would be
    reported as the new settings'. Nothing is deleted."""
    from utils.config import to_dict
    saved_path = run_dir / "config.yaml"
    try:
        saved = to_dict(load_config(saved_path))
    except ConfigError as e:
        raise SweepError(f"{run_dir} holds a finished run whose config.yaml cannot be read ({e}); use another --out "
                         "or remove that folder") from None
    there, now = _comparable(saved), _comparable(planned_config(run))
    differ = [k for k in sorted(set(there) | set(now)) if there.get(k) != now.get(k)]
    if differ:
        shown = "; ".join(f"{k}: {short_repr(there.get(k))} there, {short_repr(now.get(k))} now" for k in differ[:4])
        more = f" and {len(differ) - 4} more" if len(differ) > 4 else ""
        raise SweepError(f"{run_dir} holds a finished run trained with other settings ({shown}{more}): use another "
                         "--out for these settings (nothing was deleted)")


def check_finished_runs(plan: Plan) -> None:
    """:func:`check_finished_settings` for every finished run of the plan, before anything is launched."""
    for run in plan.runs:
        if run_state(plan.out / run.folder) == FINISHED:
            check_finished_settings(run, plan.out / run.folder)
