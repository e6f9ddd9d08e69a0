"""utils.safe_pickle: code-running pickles are refused by every loader, HCRN-style files load unchanged."""
import builtins
import collections
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from preprocess.glove import load_glove
from preprocess.question_file import load_question_file
from utils.safe_pickle import UnsafePickleError, dump_pickle, load_pickle

REPO_ROOT = Path(__file__).resolve().parent.parent
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


# --- hand-assembled pickles (opcodes of pickle protocol 3) for states no pickler writes --------------------------

def _op_str(text: str) -> bytes:
    data = text.encode()
    return pickle.BINUNICODE + struct.pack("<I", len(data)) + data


def _op_int(value: int) -> bytes:
    return pickle.BININT + struct.pack("<i", value)


def _op_dtype(spec: str) -> bytes:
    """numpy.dtype(spec, False, True) as the numpy pickler writes it (before its BUILD)."""
    return b"cnumpy\ndtype\n" + _op_str(spec) + pickle.NEWFALSE + pickle.NEWTRUE + pickle.TUPLE3 + pickle.REDUCE


def _dtype_changed_after_use(new_state: bytes) -> bytes:
    """A V16 dtype D; an array viewing 16 raw bytes through D; then a BUILD giving D ``new_state``; returns the
    array. numpy's own unpickler changes D in place, so the finished array reads its bytes through the new state."""
    numeric = getattr(np, "_core", None) and "numpy._core.numeric" or "numpy.core.numeric"
    return (pickle.PROTO + b"\x03"
            + _op_dtype("V16") + pickle.BINPUT + b"\x00" + pickle.POP
            + f"c{numeric}\n_frombuffer\n".encode() + pickle.MARK
            + pickle.SHORT_BINBYTES + b"\x10" + b"A" * 16 + pickle.BINGET + b"\x00" + _op_int(1) + pickle.TUPLE1
            + _op_str("C") + pickle.TUPLE + pickle.REDUCE + pickle.BINPUT + b"\x01" + pickle.POP
            + pickle.BINGET + b"\x00" + new_state + pickle.BUILD + pickle.POP
            + pickle.BINGET + b"\x01" + pickle.STOP)


def _dtype_state(names: bytes, fields: bytes, itemsize: int) -> bytes:
    """(3, '|', None, names, fields, itemsize, 1, 0): numpy's dtype state tuple."""
    return (pickle.MARK + _op_int(3) + _op_str("|") + pickle.NONE + names + fields + _op_int(itemsize) + _op_int(1)
            + _op_int(0) + pickle.TUPLE)


TWO_OBJECT_FIELDS = _dtype_state(
    _op_str("a") + _op_str("b") + pickle.TUPLE2,
    pickle.EMPTY_DICT
    + _op_str("a") + _op_dtype("O8") + _op_int(0) + pickle.TUPLE2 + pickle.SETITEM
    + _op_str("b") + _op_dtype("O8") + _op_int(8) + pickle.TUPLE2 + pickle.SETITEM,
    16)
HUGE_ITEM = _dtype_state(pickle.NONE, pickle.NONE, 65536)

_LOAD_IN_CHILD = """
import sys
from utils.safe_pickle import UnsafePickleError, load_pickle
try:
    array = load_pickle(sys.argv[1])
except UnsafePickleError as e:
    print(e)
    sys.exit(3)
print("loaded", array.dtype, len(array.tobytes()))
"""


def _run_child(code: str, path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, str(path)], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=60)


def test_huge_item_payload_is_real_under_plain_pickle(tmp_path):
    """numpy's own unpickler lets this file read 64 KiB past a 16-byte buffer (the payload below is no straw man)."""
    path = tmp_path / "huge.pkl"
    path.write_bytes(_dtype_changed_after_use(HUGE_ITEM))
    child = _run_child("import pickle, sys; a = pickle.load(open(sys.argv[1], 'rb')); print(len(a.tobytes()))", path)
    assert child.stdout.split() == ["65536"], child


@pytest.mark.parametrize("state", [TWO_OBJECT_FIELDS, HUGE_ITEM], ids=["two_object_fields", "64KiB_item"])
def test_dtype_changed_after_an_array_uses_it_is_refused_without_a_crash(tmp_path, state):
    path = tmp_path / "crafted.pkl"
    path.write_bytes(_dtype_changed_after_use(state))
    child = _run_child(_LOAD_IN_CHILD, path)
    assert child.returncode == 3, child  # not a segfault (negative), not a load (0)
    message = child.stdout.strip()
    assert "\n" not in message and str(path) in message and "used by an array" in message


def test_a_dtype_built_twice_is_refused(tmp_path):
    """Even without an array: the second BUILD on the same dtype (fetched from the memo) is refused."""
    path = tmp_path / "twice.pkl"
    path.write_bytes(pickle.PROTO + b"\x03" + _op_dtype("V16") + pickle.BINPUT + b"\x00" + HUGE_ITEM + pickle.BUILD
                     + pickle.POP + pickle.BINGET + b"\x00" + TWO_OBJECT_FIELDS + pickle.BUILD + pickle.STOP)
    with pytest.raises(UnsafePickleError, match="after it was built"):
        load_pickle(path)


def test_a_dtype_shared_by_several_arrays_loads(tmp_path):
    """numpy writes a shared structured dtype once and fetches it from the memo afterwards: that still works."""
    dtype = np.dtype([("a", "f4", (2,)), ("b", "<U3")])
    arrays = [np.zeros(2, dtype), np.ones(3, dtype)]
    path = tmp_path / "shared.pkl"
    with open(path, "wb") as f:
        pickle.dump(arrays, f, protocol=2)
    loaded = load_pickle(path)
    assert [a.dtype for a in loaded] == [dtype, dtype] and loaded[1]["a"].tolist() == [[1, 1]] * 3


@pytest.mark.parametrize("content", [
    b"\x80\x04\x95abcdefg",             # 10 bytes: a frame header cut short (struct.error)
    b"",                                # empty (EOFError)
    b"\x80\x03X\x04\x00\x00\x00\xff\xfe\xfd\xfc.",  # a string that is not UTF-8 (UnicodeDecodeError)
    b"\x80\x03J\x01\x00",               # an int cut short
    b"\x80\x05\x96\xff\xff\xff\xff\xff\xff\x00\x00",  # a 280 TB bytearray (MemoryError or a short read)
    b"\x80\x03K\x01K\x02\x86\x94b.",    # BUILD on a tuple
    b"garbage, not a pickle at all",
], ids=["frame_header", "empty", "not_utf8", "short_int", "huge_bytearray", "build_tuple", "text"])
def test_any_low_level_failure_is_one_line_naming_the_file(tmp_path, content):
    path = tmp_path / "bad.pkl"
    path.write_bytes(content)
    with pytest.raises(UnsafePickleError) as err:
        load_pickle(path)
    assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)
