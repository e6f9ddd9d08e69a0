"""Config files and overrides read strictly: duplicate keys, alias blow-up, deep nesting, non-UTF-8 text, bad
_base_ values and long chains are one ConfigError line each (no traceback, no memory blow-up, no silent loss);
plus a seeded fuzz test of the config loader."""
import random
import time
import tracemalloc

import pytest

from utils.config import MAX_BASE_CHAIN, REPO_ROOT, ConfigError
from training.run_schema import load_config
from utils.strict_yaml import MAX_DEPTH, MAX_EXPANDED


def laughs(levels: int = 9, width: int = 10) -> str:
    """A "billion laughs" YAML flow value: each level an alias list of ``width`` copies of the one below."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "{" + ", ".join(lines) + "}"


def one_line(error: pytest.ExceptionInfo, limit: int = 400) -> str:
    text = str(error.value)
    assert "\n" not in text and len(text) < limit, text[:1000]
    return text


def measure(fn):
    """(the ConfigError fn raised, seconds, peak bytes allocated)."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(ConfigError) as error:
            fn()
        return error, time.perf_counter() - start, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_section_written_twice_is_refused_naming_both_lines(tmp_path):
    """The first `train:` section used to be dropped without a word."""
    path = tmp_path / "twice.yml"
    path.write_text("train:\n  lr: 0.1\nmodel:\n  mfb_factor: 2\ntrain:\n  max_epochs: 3\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(path) in one_line(error) and "line 5: key 'train' is given twice (first on line 1)" in str(error.value)


def test_a_key_written_twice_in_a_section_is_refused(tmp_path):
    path = tmp_path / "twice.yml"
    path.write_text("train:\n  lr: 0.1\n  lr: 0.2\n")
    with pytest.raises(ConfigError, match="line 3: key 'lr' is given twice"):
        load_config(path)


@pytest.mark.parametrize("where", ["override", "file"])
def test_alias_blow_up_is_refused_before_expanding(tmp_path, where):
    """A 440-character override (or a 492-byte file) of nested aliases exhausted memory, and the error line
    printed the expanded value."""
    if where == "override":
        error, seconds, peak = measure(lambda: load_config(None, ["train.lr=" + laughs()]))
    else:
        path = tmp_path / "laughs.yml"
        path.write_text("train:\n  lr: " + laughs() + "\n")
        error, seconds, peak = measure(lambda: load_config(path))
    assert f"aliases expand to more than {MAX_EXPANDED} values" in one_line(error)
    assert peak < 32 * 2 ** 20 and seconds < 20


def test_aliases_within_the_bound_still_load(tmp_path):
    path = tmp_path / "anchors.yml"
    path.write_text("model:\n  mfb_factor: &f 2\n  num_heads: *f\n")
    cfg = load_config(path)
    assert cfg.model.mfb_factor == cfg.model.num_heads == 2


@pytest.mark.parametrize("text", ["[" * 100_000, "train: " + "{a: " * 5000 + "1" + "}" * 5000])
def test_deep_nesting_is_one_line(tmp_path, text):
    path = tmp_path / "deep.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert f"nested more than {MAX_DEPTH} levels" in one_line(error)
    with pytest.raises(ConfigError, match="nested more than"):
        load_config(None, ["train.lr=" + "[" * 100_000])


def test_non_utf8_config_and_a_folder_as_cfg_are_one_line(tmp_path):
    path = tmp_path / "latin1.yml"
    path.write_bytes("exp_name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert "not UTF-8" in one_line(error) and str(path) in str(error.value)
    with pytest.raises(ConfigError) as error:
        load_config(tmp_path)
    assert "is a folder" in one_line(error)


@pytest.mark.parametrize("base", ["'.'", "3", "[a.yml, b.yml]", "''"])
def test_a_base_that_is_no_file_name_is_one_line(tmp_path, base):
    path = tmp_path / "c.yml"
    path.write_text(f"_base_: {base}\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(path) in one_line(error) or "is a folder" in str(error.value)


def test_a_long_base_chain_is_refused(tmp_path):
    """A 1,500-file _base_ chain ended in RecursionError; chains are now read in a loop and limited."""
    for i in range(MAX_BASE_CHAIN + 1):
        (tmp_path / f"c{i}.yml").write_text(f"_base_: c{i + 1}.yml\n" if i < MAX_BASE_CHAIN else "seed: 3\n")
    with pytest.raises(ConfigError) as error:
        load_config(tmp_path / "c0.yml")
    assert f"longer than {MAX_BASE_CHAIN} files" in one_line(error)
    assert load_config(tmp_path / f"c{MAX_BASE_CHAIN - MAX_BASE_CHAIN // 2}.yml").seed == 3


def test_values_are_named_in_short_form(tmp_path):
    """A 4,300-digit integer could not even be repr()'d (ValueError); a long list was printed whole."""
    with pytest.raises(ConfigError) as error:
        load_config(None, ["train.lr=" + "9" * 5000])
    one_line(error)
    with pytest.raises(ConfigError) as error:
        load_config(None, ["train.lr=[" + ", ".join(["1"] * 5000) + "]"])
    assert "train.lr" in one_line(error)


# ------------------------------------------------------------------------------------------------ fuzz
def test_fuzz_config_loader(tmp_path):
    """Seeded random mutations of a real config (characters replaced, YAML punctuation and aliases inserted,
    lines duplicated or cut): every load returns a config or raises one ConfigError line (no other exception);
    bounded to about 6 s."""
    rng = random.Random(20261207)
    seed_text = (REPO_ROOT / "configs" / "demo.yml").read_text()
    base = (REPO_ROOT / "configs" / "base.yml").read_text().splitlines()
    pieces = ["[", "{", "]", "}", ": ", "- ", "&a ", "*a", "\t", "'", '"', "!!python/object:os.system ", "? ",
              "<<: *a", "\n  ", "\xe9", "1e999", "-.inf", ".nan", "0x1F", "null", "~", "_base_: x.yml\n"]
    loaded = refused = 0
    deadline = time.monotonic() + 6
    path = tmp_path / "fuzz.yml"
    while time.monotonic() < deadline:
        lines = (seed_text.splitlines() + rng.sample(base, 5)) if rng.random() < 0.5 else seed_text.splitlines()
        text = "\n".join(lines)
        for _ in range(rng.randint(1, 5)):
            at, kind = rng.randrange(len(text) + 1), rng.random()
            if kind < 0.4:
                text = text[:at] + rng.choice(pieces) * rng.randint(1, 3) + text[at:]
            elif kind < 0.6:
                text = text[:at] + chr(rng.randrange(32, 127)) + text[at + 1:]
            elif kind < 0.8:
                text = text[:at] + text[at + rng.randint(1, 20):]
            else:
                cut = text.splitlines()
                if cut:
                    i = rng.randrange(len(cut))
                    cut.insert(i, cut[i])
                text = "\n".join(cut)
        path.write_bytes(text.encode("utf-8", "surrogatepass") if rng.random() < 0.9 else text.encode("latin-1", "replace"))
        try:
            load_config(path, ["device=cpu"] if rng.random() < 0.5 else ["train.lr=" + rng.choice(pieces)])
            loaded += 1
        except ConfigError as e:
            assert "\n" not in str(e) and len(str(e)) < 2000, str(e)[:2000]
            refused += 1
    assert loaded + refused >= 100 and refused > 0


def test_an_alias_inside_its_own_anchor_is_refused(tmp_path):
    """Found in this round's own adversarial pass: `a: &a [*a]` (a value containing itself) looped forever in the
    expanded-size check (run in a subprocess with a timeout, so that a regression fails instead of hanging)."""
    import subprocess
    import sys
    code = ("from utils.config import load_config, ConfigError\n"
            "try:\n    load_config(None, ['train.lr=&a [*a]'])\nexcept ConfigError as e:\n    print(e)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert "an alias refers to a node that contains it" in done.stdout, done.stderr[-1000:]
