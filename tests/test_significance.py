"""The paired sign-flip permutation test: its edge cases, its power on a clear difference, and its statistic and
p-value against an independent enumeration of every sign flip."""
import itertools

import numpy as np
import pytest

from training.significance import paired_permutation_test


def _brute_force_p(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[float, float]:
    """(T, exact two-sided p) by flipping every question's seed-averaged difference in every way, plainly."""
    d = [float(np.mean(correct_a[:, q]) - np.mean(correct_b[:, q])) for q in range(correct_a.shape[1])]
    observed = sum(d) / len(d)
    extreme = 0
    patterns = list(itertools.product((1, -1), repeat=len(d)))
    for signs in patterns:
        flipped = sum(s * x for s, x in zip(signs, d)) / len(d)
        extreme += abs(flipped) >= abs(observed) - 1e-12
    return observed, extreme / len(patterns)


def test_identical_predictions_give_p_one():
    correct = np.random.default_rng(0).random((3, 500)) < 0.4
    result = paired_permutation_test(correct, correct.copy())
    assert result.p_value == 1.0 and result.mean_difference == 0.0 and result.num_differing == 0


def test_clear_difference_is_significant():
    rng = np.random.default_rng(1)
    n = 2000
    a = np.zeros(n, dtype=bool)
    a[rng.permutation(n)[:int(0.6 * n)]] = True
    b = np.zeros(n, dtype=bool)
    b[rng.permutation(n)[:int(0.4 * n)]] = True
    result = paired_permutation_test(a, b, rounds=2000)
    assert result.mean_difference == pytest.approx(0.2)
    assert 0.0 <= result.p_value < 0.01
    assert paired_permutation_test(b, a, rounds=2000).mean_difference == pytest.approx(-0.2)


def test_no_difference_gives_a_large_p_in_range():
    rng = np.random.default_rng(2)
    a, b = rng.random((2, 3000)) < 0.5
    p = paired_permutation_test(a, b, rounds=2000).p_value
    assert 0.0 <= p <= 1.0 and p > 0.01


@pytest.mark.parametrize("seeds", [1, 3])
def test_statistic_and_p_match_every_sign_flip(seeds):
    rng = np.random.default_rng(seeds)
    a, b = rng.random((2, seeds, 10)) < np.array([0.7, 0.35])[:, None, None]
    observed, exact_p = _brute_force_p(a.astype(float), b.astype(float))
    exact = paired_permutation_test(a, b)
    assert exact.mean_difference == pytest.approx(observed)
    assert exact.p_value == pytest.approx(exact_p)
    assert exact.method.startswith("exact")
    sampled = paired_permutation_test(a, b, rounds=40_000, seed=5, exact_up_to=0)  # Monte Carlo on the same data
    assert sampled.p_value == pytest.approx(exact_p, abs=0.01)


def test_a_shared_teacher_enters_with_its_one_run():
    students = np.array([[1, 1, 0, 0], [1, 0, 1, 0]])
    teacher = np.array([1, 0, 0, 0])
    result = paired_permutation_test(students, teacher)
    # per question: (1 - 1), (0.5 - 0), (0.5 - 0), (0 - 0) -> mean 0.25
    assert result.mean_difference == pytest.approx(0.25) and result.num_differing == 2


def test_random_rounds_are_seeded_and_chunked(monkeypatch):
    import training.significance as significance
    rng = np.random.default_rng(3)
    a, b = rng.random((2, 2, 300)) < np.array([0.55, 0.5])[:, None, None]
    whole = paired_permutation_test(a, b, rounds=3000, seed=7, exact_up_to=0)
    monkeypatch.setattr(significance, "CHUNK_ELEMENTS", 1000)  # many small chunks, the same random stream
    assert paired_permutation_test(a, b, rounds=3000, seed=7, exact_up_to=0).p_value == whole.p_value


def test_mismatched_questions_are_rejected():
    with pytest.raises(ValueError, match="different numbers of questions"):
        paired_permutation_test(np.ones((2, 5)), np.ones((2, 6)))


def _brute_force_real(values_a: np.ndarray, values_b: np.ndarray) -> tuple[float, float]:
    """(T, exact two-sided p) for real values, enumerating every sign flip of d_q with fractions-free plain floats
    and a generous tie tolerance (ties here are exact mirror images, differences otherwise are >> 1e-9)."""
    d = values_a.mean(axis=0) - values_b.mean(axis=0)
    observed = d.mean()
    hits, patterns = 0, 0
    for signs in itertools.product((1.0, -1.0), repeat=len(d)):
        patterns += 1
        hits += abs(sum(s * x for s, x in zip(signs, d)) / len(d)) >= abs(observed) - 1e-9
    return observed, hits / patterns


@pytest.mark.parametrize("seeds_a, seeds_b", [(1, 1), (3, 2), (2, 1)])
def test_real_valued_differences_match_every_sign_flip(seeds_a, seeds_b):
    """Real per-question values (e.g. squared errors averaged over seeds, here arbitrary reals): statistic and p
    against an independent enumeration of all 2^9 sign flips, and a question with d_q = 0 not flipped."""
    rng = np.random.default_rng(10 * seeds_a + seeds_b)
    a = rng.normal(1.0, 1.5, (seeds_a, 9)) ** 2
    b = rng.normal(0.0, 1.5, (seeds_b, 9)) ** 2
    b[:, 4] = a[:, 4].mean()                       # one question with no difference
    observed, exact_p = _brute_force_real(a, b)
    result = paired_permutation_test(a, b)
    assert result.mean_difference == pytest.approx(observed)
    assert result.p_value == pytest.approx(exact_p)
    assert result.num_differing == 8 and result.method.startswith("exact")
    sampled = paired_permutation_test(a, b, rounds=40_000, seed=3, exact_up_to=0)
    assert sampled.p_value == pytest.approx(exact_p, abs=0.01)


def test_squared_errors_with_mirror_ties_count_the_observed_pattern():
    """Integer squared errors whose differences tie exactly in magnitude: d = (+4, -4, +1, +1) gives T = 0.5 (sum
    2); of the 2^4 sign patterns only the 4 with signed sum 0 (the +-4 terms cancelling, and the +-1 terms
    cancelling) fall below |2|: p = 12 / 16, the observed pattern and its mirror images included."""
    a = np.array([[9.0, 0.0, 4.0, 1.0]])
    b = np.array([[5.0, 4.0, 3.0, 0.0]])
    result = paired_permutation_test(a, b)
    assert result.mean_difference == pytest.approx(0.5)
    sums = [abs(np.dot(s, [4, -4, 1, 1])) for s in itertools.product((1, -1), repeat=4)]
    assert result.p_value == pytest.approx(sum(v >= 2 for v in sums) / 16) == pytest.approx(12 / 16)


def test_non_finite_values_are_rejected():
    with pytest.raises(ValueError, match="finite"):
        paired_permutation_test(np.array([1.0, np.nan]), np.array([1.0, 0.0]))


def test_monte_carlo_p_counts_the_observed_pattern_once_more():
    """p = (1 + hits) / (1 + R), checked where the hits are known without sampling: 40 questions all won by a (a
    random flip reaches |T| only with probability 2^-39: hits = 0, p = 1 / (R + 1)), and one differing question (every
    flip reaches |T|: hits = R, p = 1). Without the +1 the first gives 0, the second R / (R + 1)."""
    a, b = np.ones(40), np.zeros(40)
    for rounds in (1, 99, 1000):
        result = paired_permutation_test(a, b, rounds=rounds, seed=1, exact_up_to=0)
        assert result.p_value == 1 / (rounds + 1) and result.num_differing == 40
        assert result.method == f"{rounds:,} random sign flips (seed 1)"
        one = paired_permutation_test(np.array([1.0, 0.0]), np.array([0.0, 0.0]), rounds=rounds, exact_up_to=0)
        assert one.p_value == 1.0
    with pytest.raises(ValueError, match="rounds must be at least 1"):
        paired_permutation_test(a, b, rounds=0)


def test_monte_carlo_p_equals_its_definition_on_a_separate_draw():
    """(1 + hits) / (1 + R) with the hits counted here from the same seeded stream of sign flips (a numpy Generator
    drawing uniform [0, 1) per round and differing question, flip where < 0.5): the whole p, not within 0.01."""
    rng = np.random.default_rng(11)
    a, b = rng.random((2, 30)) < np.array([0.6, 0.45])[:, None]
    d = (a.astype(float) - b.astype(float))
    d = d[d != 0]
    flips = np.random.default_rng(4).random((500, d.size)) < 0.5
    hits = sum(abs(sum(-x if f else x for f, x in zip(row, d))) >= abs(d.sum()) for row in flips)
    result = paired_permutation_test(a, b, rounds=500, seed=4, exact_up_to=0)
    assert result.p_value == (1 + hits) / 501


def test_monte_carlo_draws_exactly_the_rounds_when_chunks_do_not_divide_them(monkeypatch):
    """Chunks of 7 rounds for 500 rounds (the last chunk holds 3): the hits are those of exactly 500 draws of the
    stream, counted here as in test_monte_carlo_p_equals_its_definition_on_a_separate_draw."""
    import training.significance as significance
    rng = np.random.default_rng(12)
    a, b = rng.random((2, 40)) < np.array([0.6, 0.5])[:, None]
    d = a.astype(float) - b.astype(float)
    d = d[d != 0]
    monkeypatch.setattr(significance, "CHUNK_ELEMENTS", 7 * d.size)
    flips = np.random.default_rng(2).random((500, d.size)) < 0.5
    hits = int((np.abs(np.where(flips, -d, d).sum(axis=1)) >= abs(d.sum())).sum())
    assert paired_permutation_test(a, b, rounds=500, seed=2, exact_up_to=0).p_value == (1 + hits) / 501


def test_default_seed_and_exact_limit():
    """Defaults: seed 0, 10,000 rounds, all 2^n flips up to 16 differing questions (16 exact, 17 sampled)."""
    rng = np.random.default_rng(5)
    a, b = rng.random((2, 60)) < 0.5
    default = paired_permutation_test(a, b, exact_up_to=0)
    assert default.p_value == paired_permutation_test(a, b, rounds=10_000, seed=0, exact_up_to=0).p_value
    assert default.method == "10,000 random sign flips (seed 0)"
    sixteen = paired_permutation_test(np.ones(16), np.zeros(16))
    assert sixteen.method == "exact, all 65,536 sign flips" and sixteen.p_value == 2 / 2 ** 16
    assert sixteen.num_questions == 16 and sixteen.num_differing == 16
    seventeen = paired_permutation_test(np.ones(17), np.zeros(17))
    assert seventeen.method == "10,000 random sign flips (seed 0)" and seventeen.p_value == 1 / 10_001
    assert seventeen.num_questions == 17 and seventeen.num_differing == 17


def test_identical_and_empty_inputs_say_so():
    same = paired_permutation_test(np.array([[1.0, 0.0, 1.0]]), np.array([1.0, 0.0, 1.0]))
    assert (same.p_value, same.num_questions, same.num_differing) == (1.0, 3, 0)
    assert same.method == "identical values on every question"
    one = paired_permutation_test(np.array([1.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0]))
    assert one.method == "exact, all 2 sign flips" and one.p_value == 1.0 and one.num_differing == 1
    empty = paired_permutation_test(np.zeros((2, 0)), np.zeros((1, 0)))
    assert (empty.mean_difference, empty.p_value, empty.num_questions) == (0.0, 1.0, 0)
    assert empty.method == "identical values on every question"


def test_unsigned_integer_inputs_are_not_wrapped():
    """Correctness as uint8 (e.g. read from a mask): differences are taken in float64, not in wrapping unsigned
    integers (0 - 1 would be 255). d = (1, -1, 1, 1), T = 0.5; of the 16 sign patterns the 6 with two of each sign
    sum to 0 < 2, the other 10 reach |2|: p = 10 / 16."""
    a, b = np.array([[1, 0, 1, 1]], dtype=np.uint8), np.array([[0, 1, 0, 0]], dtype=np.uint8)
    result = paired_permutation_test(a, b)
    assert result.mean_difference == pytest.approx(0.5) and result.p_value == 10 / 16


def test_bad_shapes_and_runs_are_named():
    with pytest.raises(ValueError, match=r"must be \(N,\) or \(S, N\), got shape \(1, 2, 3\)"):
        paired_permutation_test(np.ones((1, 2, 3)), np.ones((1, 2, 3)))
    with pytest.raises(ValueError, match="^per-question values must be finite$"):
        paired_permutation_test(np.array([1.0, np.inf]), np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match=r"different numbers of questions \(5 vs 6\)"):
        paired_permutation_test(np.ones((2, 5)), np.ones((2, 6)))
    for a, b in ((np.ones((0, 5)), np.ones((2, 5))), (np.ones((2, 5)), np.ones((0, 5)))):
        with pytest.raises(ValueError, match="^each model needs at least one run$"):
            paired_permutation_test(a, b)


def test_describe_method_names_outcome_rounds_and_limit():
    from training.significance import describe_method
    assert describe_method() == (
        "two-sided paired sign-flip permutation test over test questions (per-question correctness averaged over "
        "seeds; 10,000 seeded random flips, or all 2^n flips when at most 16 questions differ); no multiple-comparison "
        "correction")
    assert "(per-question squared error averaged over seeds; 500 seeded" in describe_method(500, "squared error")


def test_real_values_whose_flips_tie_only_up_to_rounding_count_as_ties():
    """d = (0.1, 0.2, -0.3, 0.5) * 10^6 / 3: flipping the first three (whose exact sum is 0) gives the observed |T|
    exactly, but not in floating point. The p-value must equal the one from exact rational arithmetic (fractions,
    scale-free), 10 / 16, which counts those patterns among the extreme ones (a plain float comparison finds 6)."""
    import itertools
    from fractions import Fraction
    d = [Fraction(x) for x in ("0.1", "0.2", "-0.3", "0.5")]
    observed = abs(sum(d))
    exact = sum(abs(sum(s * x for s, x in zip(signs, d))) >= observed
                for signs in itertools.product((1, -1), repeat=4)) / 16
    values = np.array([0.1, 0.2, -0.3, 0.5]) * (1e6 / 3)
    result = paired_permutation_test(values, np.zeros(4))
    assert result.p_value == exact == 10 / 16
    many = np.tile(values, 5)  # 20 differing: sampled, the same ties decided with the tolerance
    sampled = paired_permutation_test(many, np.zeros(20), rounds=2000, seed=1, exact_up_to=0)
    flips = np.random.default_rng(1).random((2000, 20)) < 0.5
    hits = sum(abs(sum(-x if f else x for f, x in zip(row, d * 5))) >= abs(sum(d * 5)) for row in flips)
    assert sampled.p_value == (1 + hits) / 2001


def test_integer_differences_are_compared_exactly_however_large():
    """Integer differences need no tolerance (their sums are exact): d = (3e9, 1) gives |T*| in {3e9 + 1, 3e9 - 1},
    and only the 2 patterns reaching 3e9 + 1 count: p = 2 / 4 (a tolerance of 1e-9 * sum |d| = 3 would count all 4)."""
    assert paired_permutation_test(np.array([3e9, 1.0]), np.zeros(2)).p_value == 0.5
