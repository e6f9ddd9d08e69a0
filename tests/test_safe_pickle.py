"""utils.safe_pickle: code-running pickles are refused by every loader, HCRN-style files load unchanged."""
import builtins
import collections
import os
import pickle

import numpy as np
import pytest

from preprocess.glove import load_glove
from preprocess.question_file import load_question_file
from utils.safe_pickle import UnsafePickleError, dump_pickle, load_pickle

LOADERS = {"load_pickle": load_pickle, "load_question_file": load_question_file, "load_glove": load_glove}


class OsSystemPayload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class EvalPayload(OsSystemPayload):
    def __reduce__(self):
        return builtins.eval, (f"open({str(self.marker)!r}, 'w').close()",)


class ExecPayload(OsSystemPayload):
    def __reduce__(self):
        return builtins.exec, (f"open({str(self.marker)!r}, 'w').close()",)


class ForgedDtype:
    """Pickles as numpy.dtype('O8') whose state clears the 'holds objects' flags."""

    def __reduce__(self):
        return np.dtype, ("O8", False, True), (3, "|", None, None, None, -1, -1, 0)


class ObjectArrayFromBytes:
    """Pickles as _frombuffer(raw bytes, forged object dtype): an object array of arbitrary pointers."""

    def __reduce__(self):
        numeric = getattr(np, "_core", np.core).numeric  # numpy 2.x / 1.x
        return numeric._frombuffer, (bytearray(b"\x41" * 8), ForgedDtype(), (1,), "C")


class FieldPastItemEnd:
    """Pickles as an 8-byte structured dtype whose field lies 4 KiB past the item: out-of-bounds reads."""

    def __reduce__(self):
        return np.dtype, ("V8", False, True), (3, "|", None, ("a",), {"a": (np.dtype("f8"), 4096)}, 8, 1, 0)


class FloatWithFields:
    """Pickles as a float64 dtype given a structured state (fields on a non-void type)."""

    def __reduce__(self):
        return np.dtype, ("f8", False, True), (3, "|", None, ("a",), {"a": (np.dtype("f8"), 0)}, 8, 1, 0)


class DirectNdarray:
    """Pickles as numpy.ndarray((1,), 'O', buffer): raw bytes viewed as object pointers."""

    def __reduce__(self):
        return np.ndarray, ((1,), "O", bytearray(b"\x41" * 8))


class FailsToPickle:
    def __reduce__(self):
        raise RuntimeError("fails mid-write")


def _hcrn_like(payload):
    """A dict shaped like an HCRN question file with one malicious value hidden among the arrays."""
    return {"questions": np.zeros((2, 3), np.int32), "answers": [0, 1], "glove": payload}


@pytest.mark.parametrize("loader_name", sorted(LOADERS))
@pytest.mark.parametrize("payload_cls", [OsSystemPayload, EvalPayload, ExecPayload])
@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_code_running_pickles_are_refused_by_every_loader(tmp_path, loader_name, payload_cls, protocol):
    marker = tmp_path / "payload_ran"
    path = tmp_path / "evil.pkl"
    with open(path, "wb") as f:
        pickle.dump(_hcrn_like(payload_cls(marker)), f, protocol=protocol)
    with pytest.raises(UnsafePickleError) as err:
        LOADERS[loader_name](path)
    assert str(path) in str(err.value)
    assert any(name in str(err.value) for name in ("system", "eval", "exec"))
    assert not marker.exists()


def test_refusal_happens_before_the_payload_could_run(tmp_path):
    """The same file run through plain pickle does create the marker: the test's payload is real."""
    marker = tmp_path / "payload_ran"
    path = tmp_path / "evil.pkl"
    dump_pickle(OsSystemPayload(marker), path)
    with pytest.raises(UnsafePickleError):
        load_pickle(path)
    assert not marker.exists()
    with open(path, "rb") as f:
        pickle.load(f)  # the unsafe way, on our own harmless payload
    assert marker.exists()


@pytest.mark.parametrize("payload", [ObjectArrayFromBytes(), FieldPastItemEnd(), FloatWithFields(), DirectNdarray()])
def test_crafted_numpy_states_are_refused(tmp_path, payload):
    path = tmp_path / "crafted.pkl"
    dump_pickle({"x": payload}, path, protocol=5)
    with pytest.raises(UnsafePickleError) as err:
        load_pickle(path)
    assert str(path) in str(err.value)


def test_forged_dtype_flags_are_replaced_by_numpys_own(tmp_path):
    path = tmp_path / "dtype.pkl"
    dump_pickle(ForgedDtype(), path)
    dtype = load_pickle(path)
    assert dtype == np.dtype("O") and dtype.flags == np.dtype("O").flags


@pytest.mark.parametrize("protocol", [0, 2, 3, 4, 5])
def test_hcrn_style_files_load_unchanged(tmp_path, protocol):
    rng = np.random.default_rng(0)
    obj = {
        "questions": rng.integers(0, 50, (4, 7)).astype(np.int32),
        "questions_len": np.array([7, 3, 5, 1], np.int32),
        "question_id": [0, 1, 2, 3],
        "video_ids": np.array([5, 5, 9, 12]),
        "video_names": np.array(["vid5", "vid5", "vid9", "vid12"]),
        "answers": [3, 0, 1, 2],
        "glove": rng.standard_normal((50, 300)).astype(np.float32),
        "big_endian": np.arange(6, dtype=">f8").reshape(2, 3).T,
        "structured": np.zeros(2, dtype=[("a", "f4", (3,)), ("b", "<U4")]),
        "scalar": np.float32(1.5),
        "extras": (collections.OrderedDict(a={1, 2}), frozenset({b"x"}), 1 + 2j, None, True, bytearray(b"ab")),
    }
    path = tmp_path / "hcrn.pt"
    with open(path, "wb") as f:  # written the way HCRN does: plain pickle.dump
        pickle.dump(obj, f, protocol=protocol)
    loaded = load_pickle(path)
    assert loaded.keys() == obj.keys()
    for key, value in obj.items():
        if isinstance(value, np.ndarray):
            assert loaded[key].dtype.kind == value.dtype.kind and loaded[key].shape == value.shape
            assert (loaded[key] == value).all()
        else:
            assert loaded[key] == value


def test_dump_pickle_is_atomic_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "sub" / "out.pkl"
    dump_pickle({"a": np.arange(3)}, path)
    dump_pickle({"a": np.arange(5)}, path)
    assert load_pickle(path)["a"].tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(RuntimeError, match="fails mid-write"):
        dump_pickle({"a": np.zeros(10**5), "b": FailsToPickle()}, path)
    assert load_pickle(path)["a"].tolist() == [0, 1, 2, 3, 4]  # the old file survives a failed write
    assert os.listdir(path.parent) == ["out.pkl"]


@pytest.mark.parametrize("protocol", [4, 5])
@pytest.mark.parametrize("keep_bytes", [100, 500_000])  # cut inside a frame / inside a large array
def test_truncated_file_is_reported_by_name(tmp_path, protocol, keep_bytes):
    path = tmp_path / "cut.pkl"
    dump_pickle({"a": np.arange(10**5)}, path, protocol=protocol)
    path.write_bytes(path.read_bytes()[:keep_bytes])
    with pytest.raises(UnsafePickleError, match="cut.pkl"):
        load_pickle(path)
