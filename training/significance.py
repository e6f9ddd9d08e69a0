"""Is model a better than model b on the test questions? A paired permutation (sign-flip) test over questions.

Input: one value per seed and test question for each model, ``values_a`` (S_a, N) and ``values_b`` (S_b, N), the
same N questions in the same order: correctness in {0, 1} (accuracy: open-ended and multiple-choice heads) or the
squared error of the prediction (MSE: the count head); any real per-question values work. Per question q the
difference of the seed means

    d_q = mean over a's seeds of values_a[s, q] - mean over b's seeds of values_b[s, q]

(with the same S seeds on both sides this is the mean over seeds of values_a[s, q] - values_b[s, q]; a model with
one run, such as a teacher shared by all seeds, enters with that run). The statistic is T = mean_q d_q: the
difference in accuracy, or in MSE. Under the null hypothesis a and b are exchangeable on every question, so each
d_q is as likely to have the opposite sign: the test flips the sign of every d_q independently at random, R times
(seeded), and reports the two-sided p = (1 + #{|T*| >= |T|}) / (1 + R). Questions with d_q = 0 cannot change
T*, so only the differing ones are flipped; with at most ``exact_up_to`` of them all 2^n flips are enumerated and
p = #{|T*| >= |T|} / 2^n exactly. Identical values give p = 1.

Arithmetic: the test works on S_a * S_b * d_q. For integer inputs (correctness, squared errors of integer counts)
those are integers and every flipped sum is exact in float64; for other real inputs ``|T*| >= |T|`` is decided
with a tolerance of 1e-9 relative to sum_q |d_q|, so that rounding cannot drop the flip pattern equal to T.

Assumptions, to read the p-value by:
  - test questions are independent draws (questions about one video are not: p is then somewhat too small);
  - the seeds' different student initialisations are averaged within each question, not treated as separate
    samples: the test says whether the difference holds over these questions, for models trained like these;
  - a teacher shared by all seeds is one fixed model, not resampled: its own seed variation is not in p;
  - several comparisons (grid points, models) are not corrected for multiple testing.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

DEFAULT_ROUNDS = 10_000
EXACT_UP_TO = 16          # differing questions up to which all 2^n sign flips are enumerated
CHUNK_ELEMENTS = 4_000_000  # random signs drawn per chunk (rounds x differing questions): bounds memory to ~32 MB


@dataclass(frozen=True)
class PairedTest:
    """The outcome of one paired test: ``mean_difference`` = mean of a's values minus b's (accuracy: a fraction;
    MSE: squared-error units)."""
    mean_difference: float
    p_value: float
    num_questions: int
    num_differing: int
    method: str


def describe_method(rounds: int = DEFAULT_ROUNDS, outcome: str = "correctness") -> str:
    """One line naming the test, for reports; ``outcome`` names the per-question values (correctness, squared
    error)."""
    return (f"two-sided paired sign-flip permutation test over test questions (per-question {outcome} averaged "
            f"over seeds; {rounds:,} seeded random flips, or all 2^n flips when at most {EXACT_UP_TO} questions "
            f"differ); no multiple-comparison correction")


def _as_runs(values: np.ndarray) -> np.ndarray:
    """(S, N) float64 per-question values; a 1-d array is one run."""
    runs = np.asarray(values, dtype=np.float64)
    if runs.ndim not in (1, 2):
        raise ValueError(f"per-question values must be (N,) or (S, N), got shape {runs.shape}")
    if not np.isfinite(runs).all():
        raise ValueError("per-question values must be finite")
    return runs[None] if runs.ndim == 1 else runs


def _scaled_differences(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,) float64: S_a * S_b * d_q (integers when the inputs are, so sums of flipped terms are exact)."""
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"the two models were scored on different numbers of questions ({a.shape[1]} vs "
                         f"{b.shape[1]})")
    if a.shape[0] == 0 or b.shape[0] == 0:
        raise ValueError("each model needs at least one run")
    return b.shape[0] * a.sum(axis=0) - a.shape[0] * b.sum(axis=0)


def _tolerance(d: np.ndarray) -> float:
    """0 for integer differences (exact sums), else 1e-9 of sum |d| (float rounding of reordered sums)."""
    return 0.0 if np.array_equal(d, np.round(d)) else 1e-9 * float(np.abs(d).sum())


def _exact_count(d: np.ndarray, observed: float) -> tuple[int, int]:
    """(#flips with |T*| >= |T|, 2^n) over every sign pattern of the n entries of ``d``."""
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=len(d))))  # (2^n, n)
    return int((np.abs(signs @ d) >= observed - _tolerance(d)).sum()), len(signs)


def _random_count(d: np.ndarray, observed: float, rounds: int, seed: int) -> int:
    """#random flips with |T*| >= |T| among ``rounds``, drawn in chunks of at most CHUNK_ELEMENTS signs."""
    rng = np.random.default_rng(seed)
    chunk = max(1, CHUNK_ELEMENTS // len(d))
    total, hits, tolerance = d.sum(), 0, _tolerance(d)
    for start in range(0, rounds, chunk):
        flips = rng.random((min(chunk, rounds - start), len(d))) < 0.5   # (chunk, n) True = flip the sign
        flipped_sum = total - 2.0 * (flips.astype(np.float64) @ d)
        hits += int((np.abs(flipped_sum) >= observed - tolerance).sum())
    return hits


def paired_permutation_test(values_a: np.ndarray, values_b: np.ndarray, rounds: int = DEFAULT_ROUNDS,
                            seed: int = 0, exact_up_to: int = EXACT_UP_TO) -> PairedTest:
    """Test whether models a and b differ in their mean per-question value on the same questions (see the module
    docstring).

    ``values_a`` (S_a, N) / ``values_b`` (S_b, N): per run and question, correctness (0/1 or bool) or any finite
    real value such as a squared error; a 1-d array is one run.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    a, b = _as_runs(values_a), _as_runs(values_b)
    scaled = _scaled_differences(a, b)
    n = scaled.size
    d = scaled[scaled != 0]
    observed = abs(d.sum())
    mean_difference = float(scaled.sum() / (a.shape[0] * b.shape[0]) / n) if n else 0.0
    if d.size == 0:
        return PairedTest(mean_difference, 1.0, n, 0, "identical values on every question")
    if d.size <= exact_up_to:
        hits, total = _exact_count(d, observed)
        return PairedTest(mean_difference, hits / total, n, int(d.size), f"exact, all {total:,} sign flips")
    hits = _random_count(d, observed, rounds, seed)
    return PairedTest(mean_difference, (1 + hits) / (1 + rounds), n, int(d.size),
                      f"{rounds:,} random sign flips (seed {seed})")
