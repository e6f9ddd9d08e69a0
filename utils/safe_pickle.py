"""Pickle files that cannot run code: a restricted loader and an atomic writer.

Loading a pickle calls whatever global the file names, so a file from elsewhere could run any code.
``load_pickle`` admits only the globals that plain containers, numbers, strings and numpy arrays, dtypes and
scalars need (numpy 1.x and 2.x module paths, Python 2 and 3 protocols); any other global raises
``UnsafePickleError`` naming the file and the global, before anything is called.

numpy's own pickle support is not safe on its own either: a dtype's pickled state sets its internal flags and
field offsets unchecked, so a crafted state can make numpy read raw bytes as object pointers or read past a
buffer; and applied to a dtype that an array already uses, a new state reinterprets that array's bytes. So
``numpy.ndarray`` is only reachable through ``_reconstruct``, a dtype is never changed in place: a BUILD on a dtype
replaces it (on the stack and in the memo) by a new dtype made by numpy's validating constructor from the state
(``_canonical_dtype``), and a BUILD on a dtype that an array or scalar already uses, or on one already built, is
refused. That needs the pure-Python unpickler (the C one cannot intercept BUILD): about 4x slower on millions of
small objects, the same on big arrays. Any failure to decode the file (truncated, garbage, too large for memory)
is raised as one ``UnsafePickleError`` line naming the file.

``dump_pickle`` writes numpy's reconstruction functions under their numpy 1.x names (``numpy.core.multiarray.
_reconstruct``, ``numpy.core.multiarray.scalar``, ``numpy.core.numeric._frombuffer``) even under numpy 2, which
would write ``numpy._core.*``: numpy < 1.26 has no ``numpy._core`` and could not load the file, while numpy 2
still resolves the ``numpy.core`` names (HCRN/DualVGR environments run numpy 1.x). Everything else is pickled
exactly as ``pickle.dump`` would.
"""
from __future__ import annotations

import collections
import pickle
import struct
import types
from pathlib import Path

import numpy as np

from utils.atomic import atomic_write

try:  # numpy >= 2
    from numpy._core import multiarray as _np_multiarray
    from numpy._core import numeric as _np_numeric
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _np_multiarray
    from numpy.core import numeric as _np_numeric

__all__ = ["UnsafePickleError", "load_pickle", "dump_pickle"]

_ALLOWED_DTYPE_KINDS = "biufcSUVO"  # bool, ints, floats, complex, bytes, str, void/structured, object
_NPY_ALIGNED_STRUCT = 0x80


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle names a global outside the allow-list (it could run code), or is not a readable pickle."""


class _NdarrayToken:
    """Stands for ``numpy.ndarray`` in a pickle: accepted by ``_reconstruct``, not callable.

    Calling ``numpy.ndarray(shape, dtype, buffer)`` directly can view raw bytes as object pointers.
    """

    def __repr__(self) -> str:
        return "numpy.ndarray (as a _reconstruct argument only)"

    def __call__(self, *args, **kwargs):
        raise UnsafePickleError("numpy.ndarray(...) called directly (it can view raw bytes as pointers)")


_NDARRAY = _NdarrayToken()


def _reconstruct(subtype, shape, dtype):
    """``numpy.core.multiarray._reconstruct`` restricted to plain ndarrays."""
    if subtype is not _NDARRAY:
        raise UnsafePickleError(f"_reconstruct of {subtype!r} (only numpy.ndarray is allowed)")
    return _np_multiarray._reconstruct(np.ndarray, shape, dtype)


class _DtypeMemo(dict):
    """The unpickler's memo, also knowing under which keys each dtype object is stored (so a built dtype can
    replace the unbuilt one everywhere a later GET could fetch it, without scanning the memo)."""

    def __init__(self):
        super().__init__()
        self.dtype_keys: dict[int, list] = {}

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        if isinstance(value, np.dtype):
            self.dtype_keys.setdefault(id(value), []).append(key)

    def replace_dtype(self, old: np.dtype, new: np.dtype) -> None:
        """Every memo entry holding ``old`` now holds ``new``."""
        for key in self.dtype_keys.pop(id(old), ()):
            if self.get(key) is old:
                self[key] = new


def _new_dtype(spec, align=False, copy=False) -> np.dtype:
    """``numpy.dtype(spec)`` for a type string of an allowed kind (no datetimes, no dict/tuple specs)."""
    if not isinstance(spec, str):
        raise UnsafePickleError(f"numpy.dtype({spec!r}): only a type string is allowed")
    dtype = np.dtype(spec, bool(align), bool(copy))
    if dtype.kind not in _ALLOWED_DTYPE_KINDS:
        raise UnsafePickleError(f"numpy.dtype({spec!r}): kind '{dtype.kind}' is not allowed")
    return dtype


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """Stand-in for ``_codecs.encode``: protocol-2 pickles store ``bytes`` as latin-1 text, nothing else."""
    if encoding.lower().replace("_", "-") not in ("latin1", "latin-1", "iso-8859-1"):
        raise UnsafePickleError(f"_codecs.encode with encoding {encoding!r} (only latin1 is allowed)")
    if not isinstance(text, str):
        raise UnsafePickleError(f"_codecs.encode of a {type(text).__name__} (only str is allowed)")
    return text.encode("latin1")


# (module, name) as written in the file -> what the loader uses for it. numpy 1.x files name numpy.core.*,
# numpy 2.x files numpy._core.*; both resolve to the installed numpy, so no deprecated shim module is imported.
_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _new_dtype,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("_codecs", "encode"): _latin1_encode,
}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED_GLOBALS[(_module, "_reconstruct")] = _reconstruct
    _ALLOWED_GLOBALS[(_module, "scalar")] = _np_multiarray.scalar
for _module in ("numpy.core.numeric", "numpy._core.numeric"):
    _ALLOWED_GLOBALS[(_module, "_frombuffer")] = _np_numeric._frombuffer
for _module in ("builtins", "__builtin__"):  # __builtin__: protocol 0-2 files written by Python 2
    for _name, _obj in (("set", set), ("frozenset", frozenset), ("complex", complex), ("bytes", bytes),
                        ("bytearray", bytearray)):
        _ALLOWED_GLOBALS[(_module, _name)] = _obj

# id of an allowed callable that makes an array or scalar -> position of its dtype argument
_DTYPE_ARGUMENT_OF = {id(_reconstruct): 2, id(_np_numeric._frombuffer): 1, id(_np_multiarray.scalar): 0}


def _canonical_dtype(dtype: np.dtype, state) -> np.dtype:
    """The dtype that ``dtype.__setstate__(state)`` describes, built by numpy's validating constructor."""
    if not (isinstance(state, tuple) and len(state) in (8, 9) and state[0] in (3, 4)):
        raise UnsafePickleError(f"unsupported numpy dtype state {state!r}")
    _, endian, subarray, names, fields, elsize, _, flags = state[:8]
    if names is not None or fields is not None:
        if not (isinstance(names, tuple) and isinstance(fields, dict) and all(n in fields for n in names)):
            raise UnsafePickleError(f"malformed structured dtype state {state!r}")
        entries = [fields[n] for n in names]
        if not all(isinstance(e, tuple) and len(e) in (2, 3) and isinstance(e[0], np.dtype) for e in entries):
            raise UnsafePickleError(f"malformed structured dtype fields {fields!r}")
        canonical = np.dtype(
            {
                "names": list(names),
                "formats": [e[0] for e in entries],
                "offsets": [e[1] for e in entries],
                "titles": [e[2] if len(e) == 3 else None for e in entries],
                "itemsize": elsize,
            },
            align=bool(isinstance(flags, int) and flags & _NPY_ALIGNED_STRUCT),
        )
    elif subarray is not None:
        if not (isinstance(subarray, tuple) and len(subarray) == 2 and isinstance(subarray[0], np.dtype)):
            raise UnsafePickleError(f"malformed subarray dtype state {state!r}")
        canonical = np.dtype(subarray)
    elif dtype.kind in "SUV" and isinstance(elsize, int) and elsize > 0:
        canonical = np.dtype(f"{dtype.kind}{elsize // 4 if dtype.kind == 'U' else elsize}")
    else:
        canonical = np.dtype(dtype.str)
    if endian in ("<", ">") and canonical.byteorder != "|":
        canonical = canonical.newbyteorder(endian)
    return canonical


class _RestrictedUnpickler(pickle._Unpickler):
    """Pure-Python unpickler: globals only from ``_ALLOWED_GLOBALS``, dtype states validated before use."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file, path: Path):
        # latin1 lets numpy arrays written by Python 2 load (their raw data is a py2 str).
        super().__init__(file, encoding="latin1")
        self._file = file
        self._path = path
        self.memo = _DtypeMemo()
        self._settled_dtypes: dict[int, np.dtype] = {}  # built or used by an array/scalar: never built again

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self._path}: refused to load: the pickle names the global '{module}.{name}', which could run "
                "code; only plain containers, numbers, strings and numpy arrays are allowed"
            ) from None

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self._path}: refused to load: the pickle uses persistent ids ({pid!r})")

    def _settle(self, value) -> None:
        """Mark ``value`` (if a dtype) as built or in use, so that no later BUILD may change it."""
        if isinstance(value, np.dtype):
            self._settled_dtypes[id(value)] = value  # the reference keeps the id from being reused

    def _load_reduce(self):
        """REDUCE: the default, after marking the dtype handed to ``_frombuffer``/``scalar`` as in use."""
        position = _DTYPE_ARGUMENT_OF.get(id(self.stack[-2]))
        args = self.stack[-1]
        if position is not None and isinstance(args, tuple) and len(args) > position:
            self._settle(args[position])
        pickle._Unpickler.load_reduce(self)

    dispatch[pickle.REDUCE[0]] = _load_reduce

    def _load_build(self):
        """BUILD: a dtype is replaced by a new, validated dtype made from the state (never changed in place);
        an array's state marks its dtype as in use; anything else gets the default behaviour."""
        inst = self.stack[-2]
        if isinstance(inst, np.dtype):
            state = self.stack.pop()
            if id(inst) in self._settled_dtypes:
                raise UnsafePickleError(f"a BUILD on the numpy dtype {inst} after it was built or used by an array "
                                        "(that would reinterpret the array's bytes)")
            canonical = _canonical_dtype(inst, state)
            if canonical.num != inst.num:  # e.g. a float dtype given a structured state
                raise UnsafePickleError(f"numpy dtype state {state!r} does not fit a {inst} dtype")
            self.stack[-1] = canonical
            self.memo.replace_dtype(inst, canonical)
            self._settle(inst)
            self._settle(canonical)
            return
        if isinstance(inst, np.ndarray) and isinstance(self.stack[-1], tuple):
            for item in self.stack[-1]:
                self._settle(item)
        pickle._Unpickler.load_build(self)

    dispatch[pickle.BUILD[0]] = _load_build

    def _load_bytearray8(self):
        """BYTEARRAY8 (protocol 5 numpy data) read straight into its buffer; the pure-Python default reads it
        into a temporary bytes object first, doubling peak memory on a multi-GB GloVe matrix."""
        unframer = getattr(self, "_unframer", None)
        if unframer is None or not hasattr(unframer, "current_frame"):  # a Python whose internals differ
            return pickle._Unpickler.load_bytearray8(self)
        (size,) = struct.unpack("<Q", self.read(8))
        buffer = bytearray(size)
        if unframer.current_frame is not None:
            n = unframer.current_frame.readinto(buffer)
            if n == size:
                self.append(buffer)
                return
            if n:
                raise pickle.UnpicklingError("pickle exhausted before end of frame")
            unframer.current_frame = None
        view, filled = memoryview(buffer), 0
        while filled < size:
            n = self._file.readinto(view[filled:])
            if not n:
                raise EOFError(f"pickle data ends {size - filled} bytes into a {size}-byte array")
            filled += n
        self.append(buffer)

    dispatch[pickle.BYTEARRAY8[0]] = _load_bytearray8


def load_pickle(path) -> object:
    """Load a pickle holding only plain containers, numbers, strings and numpy arrays/dtypes/scalars.

    Raises ``UnsafePickleError`` naming the file (and the refused global) if the file names anything else or is
    not a readable pickle; ``FileNotFoundError`` if it does not exist.
    """
    path = Path(path)
    with open(path, "rb") as f:
        try:
            return _RestrictedUnpickler(f, path).load()
        except UnsafePickleError as e:
            raise e if str(path) in str(e) else UnsafePickleError(f"{path}: refused to load: {e}") from None
        except MemoryError:
            raise UnsafePickleError(f"{path}: not a readable pickle (it asks for more memory than there is; "
                                    "truncated or corrupt?)") from None
        except RecursionError:
            raise UnsafePickleError(f"{path}: not a readable pickle (nested too deeply)") from None
        except Exception as e:  # noqa: BLE001 - struct.error, EOFError, UnicodeDecodeError, ...: all mean "bad file"
            reason = " ".join(f"{type(e).__name__}: {e}".split())[:300]
            raise UnsafePickleError(f"{path}: not a readable pickle ({reason})") from None


# id of each numpy callable that numpy's pickling names -> (module, name) as numpy 1.x spells it
_NUMPY1_GLOBAL_NAMES = {
    id(_np_multiarray._reconstruct): ("numpy.core.multiarray", "_reconstruct"),
    id(_np_multiarray.scalar): ("numpy.core.multiarray", "scalar"),
    id(_np_numeric._frombuffer): ("numpy.core.numeric", "_frombuffer"),
}


class _Numpy1NamesPickler(pickle._Pickler):
    """``pickle.Pickler`` writing numpy's reconstruction functions under their ``numpy.core`` names.

    The pure-Python pickler, since only it lets a subclass choose the module name written for a global (the C
    pickler checks that the name imports to the very object). Its one costly difference, a copy of every protocol-5
    array buffer before writing it, is avoided by ``_save_picklebuffer``.
    """

    dispatch = dict(pickle._Pickler.dispatch)

    def save_global(self, obj, name=None):
        legacy = _NUMPY1_GLOBAL_NAMES.get(id(obj))
        if legacy is None:
            return pickle._Pickler.save_global(self, obj, name)
        module, qualname = legacy
        if self.proto >= 4:
            self.save(module)
            self.save(qualname)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f"{module}\n{qualname}\n".encode("ascii"))
        self.memoize(obj)

    dispatch[types.FunctionType] = save_global  # numpy's _frombuffer is a Python function

    def _save_picklebuffer(self, obj):
        """A protocol-5 buffer written in band straight from its memory (the base class copies it first)."""
        write_large = getattr(getattr(self, "framer", None), "write_large_bytes", None)
        if self.proto < 5 or self._buffer_callback is not None or write_large is None:
            return pickle._Pickler.save_picklebuffer(self, obj)
        with obj.raw() as view:
            if not view.contiguous:
                return pickle._Pickler.save_picklebuffer(self, obj)
            header = (pickle.BINBYTES8 if view.readonly else pickle.BYTEARRAY8) + struct.pack("<Q", view.nbytes)
            if view.nbytes >= self.framer._FRAME_SIZE_TARGET:
                write_large(header, view)
            else:
                self.write(header + view.tobytes())
        self.memoize(obj)

    dispatch[pickle.PickleBuffer] = _save_picklebuffer


def dump_pickle(obj, path, protocol: int = 4) -> None:
    """Pickle ``obj`` to ``path`` atomically: written to a temporary file in the same folder, then renamed.

    A crash mid-write leaves any previous file intact and no partial file behind. numpy globals are written under
    their ``numpy.core`` names, so numpy 1.x (before 1.26 too) loads the file as numpy 2 does. Protocol 4 is
    readable by every Python 3 HCRN/DualVGR environment; protocol 5 (Python 3.8+) writes and reads large numpy
    arrays without an extra in-memory copy.
    """
    with atomic_write(path) as f:
        _Numpy1NamesPickler(f, protocol=protocol).dump(obj)
