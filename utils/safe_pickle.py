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

Bounds, checked while loading so that no hostile file makes the loader crash or allocate more than the file holds:
containers nest at most ``MAX_DEPTH`` levels (CPython hashes nested tuples and numpy frees nested object arrays
recursively in C: about 100,000 levels of tuples, or 5,000 of arrays, crash the process); the tree a pickle
describes (counting shared containers once per reference) has at most ``max(MIN_NODES, NODES_PER_BYTE x file size)``
containers; a container already placed inside another is never changed again (no depth can grow unseen); every
length the file declares is checked against the bytes the file still holds before anything is allocated; and the
allowed callables refuse arguments that would allocate by themselves (``bytearray(2**30)``, an ndarray whose shape
does not match its data). ``check_pickle_bounds`` applies the same bounds to a pickle whose globals are someone
else's to check (a torch checkpoint's ``data.pkl``, before ``torch.load(weights_only=True)`` reads it).

``dump_pickle`` writes numpy's reconstruction functions under their numpy 1.x names (``numpy.core.multiarray.
_reconstruct``, ``numpy.core.multiarray.scalar``, ``numpy.core.numeric._frombuffer``) even under numpy 2, which
would write ``numpy._core.*``: numpy < 1.26 has no ``numpy._core`` and could not load the file, while numpy 2
still resolves the ``numpy.core`` names (HCRN/DualVGR environments run numpy 1.x). Everything else is pickled
exactly as ``pickle.dump`` would.
"""
from __future__ import annotations

import collections
import io
import math
import os
import pickle
import struct
import types
import zipfile
from pathlib import Path

import numpy as np

from utils.atomic import atomic_write
from utils.text import short_repr

try:  # numpy >= 2
    from numpy._core import multiarray as _np_multiarray
    from numpy._core import numeric as _np_numeric
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _np_multiarray
    from numpy.core import numeric as _np_numeric

__all__ = ["UnsafePickleError", "load_pickle", "dump_pickle", "check_pickle_bounds", "check_torch_file_bounds"]

_ALLOWED_DTYPE_KINDS = "biufcSUVO"  # bool, ints, floats, complex, bytes, str, void/structured, object
_NPY_ALIGNED_STRUCT = 0x80
MAX_DEPTH = 100  # nesting levels of containers (our files nest fewer than 10)
MIN_NODES, NODES_PER_BYTE = 2 ** 20, 4  # containers in the expanded tree: max(MIN_NODES, NODES_PER_BYTE x bytes)


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
    """``numpy.core.multiarray._reconstruct`` restricted to plain ndarrays of no elements (numpy always writes
    shape (0,) here: the real shape and the data come with the array's BUILD state, checked by
    ``_check_array_state``)."""
    if subtype is not _NDARRAY:
        raise UnsafePickleError(f"_reconstruct of {short_repr(subtype)} (only numpy.ndarray is allowed)")
    if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape) and 0 in shape):
        raise UnsafePickleError(f"_reconstruct with shape {short_repr(shape)} (numpy writes an empty shape such as "
                                "(0,); the data follow in the array's state)")
    return _np_multiarray._reconstruct(np.ndarray, shape, dtype)


_TEXT_ENCODINGS = ("latin1", "latin-1", "iso-8859-1", "utf-8", "utf8", "ascii")


def _bytes_from(kind: type, args: tuple):
    """``bytes(...)`` / ``bytearray(...)`` as pickles call them: from nothing, from bytes, or from text and its
    encoding. A size (``bytearray(2**30)``) or any other argument is refused: it would allocate memory the file
    does not hold."""
    if not args:
        return kind()
    if len(args) == 1 and isinstance(args[0], (bytes, bytearray)):
        return kind(args[0])
    if len(args) in (2, 3) and isinstance(args[0], str) and isinstance(args[1], str) \
            and args[1].lower().replace("_", "-") in _TEXT_ENCODINGS:
        return kind(*args)
    raise UnsafePickleError(f"{kind.__name__}({', '.join(map(short_repr, args))}): only bytes or text with a text encoding "
                            "are allowed as arguments")


def _bytes(*args):
    return _bytes_from(bytes, args)


def _bytearray(*args):
    return _bytes_from(bytearray, args)


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
        raise UnsafePickleError(f"numpy.dtype({short_repr(spec)}): only a type string is allowed")
    dtype = np.dtype(spec, bool(align), bool(copy))
    if dtype.kind not in _ALLOWED_DTYPE_KINDS:
        raise UnsafePickleError(f"numpy.dtype({short_repr(spec)}): kind '{dtype.kind}' is not allowed")
    return dtype


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """Stand-in for ``_codecs.encode``: protocol-2 pickles store ``bytes`` as latin-1 text, nothing else."""
    if encoding.lower().replace("_", "-") not in ("latin1", "latin-1", "iso-8859-1"):
        raise UnsafePickleError(f"_codecs.encode with encoding {short_repr(encoding)} (only latin1 is allowed)")
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
    for _name, _obj in (("set", set), ("frozenset", frozenset), ("complex", complex), ("bytes", _bytes),
                        ("bytearray", _bytearray)):
        _ALLOWED_GLOBALS[(_module, _name)] = _obj

# id of an allowed callable that makes an array or scalar -> position of its dtype argument
_DTYPE_ARGUMENT_OF = {id(_reconstruct): 2, id(_np_numeric._frombuffer): 1, id(_np_multiarray.scalar): 0}


def _canonical_dtype(dtype: np.dtype, state) -> np.dtype:
    """The dtype that ``dtype.__setstate__(state)`` describes, built by numpy's validating constructor."""
    if not (isinstance(state, tuple) and len(state) in (8, 9) and state[0] in (3, 4)):
        raise UnsafePickleError(f"unsupported numpy dtype state {short_repr(state)}")
    _, endian, subarray, names, fields, elsize, _, flags = state[:8]
    if names is not None or fields is not None:
        if not (isinstance(names, tuple) and isinstance(fields, dict) and all(n in fields for n in names)):
            raise UnsafePickleError(f"malformed structured dtype state {short_repr(state)}")
        entries = [fields[n] for n in names]
        if not all(isinstance(e, tuple) and len(e) in (2, 3) and isinstance(e[0], np.dtype) for e in entries):
            raise UnsafePickleError(f"malformed structured dtype fields {short_repr(fields)}")
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
            raise UnsafePickleError(f"malformed subarray dtype state {short_repr(state)}")
        canonical = np.dtype(subarray)
    elif dtype.kind in "SUV" and isinstance(elsize, int) and elsize > 0:
        canonical = np.dtype(f"{dtype.kind}{elsize // 4 if dtype.kind == 'U' else elsize}")
    else:
        canonical = np.dtype(dtype.str)
    if endian in ("<", ">") and canonical.byteorder != "|":
        canonical = canonical.newbyteorder(endian)
    return canonical


_CONTAINERS = (tuple, list, dict, set, frozenset, np.ndarray)
_PLAIN = frozenset({str, bytes, bytearray, int, float, complex, bool, type(None)})  # never containers: fast path


def _clip(name: str) -> str:
    """A module or global name from the file, on one line and at most 100 characters."""
    name = " ".join(str(name).split())
    return name if len(name) <= 100 else name[:100] + "..."


_LENGTH_FIELDS = {fmt: struct.Struct(fmt) for fmt in ("<i", "<I", "<Q")}


def _utf8(data: bytes) -> str:
    return str(data, "utf-8", "surrogatepass")


# opcodes that declare the length of the bytes that follow -> (struct format of the length, what they push)
_SIZED_OPCODES = {pickle.BINSTRING: ("<i", lambda self, data: self._decode_string(data)),
                  pickle.BINBYTES: ("<I", lambda self, data: data), pickle.BINBYTES8: ("<Q", lambda self, data: data),
                  pickle.BINUNICODE: ("<I", lambda self, data: _utf8(data)),
                  pickle.BINUNICODE8: ("<Q", lambda self, data: _utf8(data)),
                  pickle.LONG4: ("<i", lambda self, data: pickle.decode_long(data))}


class _BoundedUnpickler(pickle._Unpickler):
    """Pure-Python unpickler with the module's bounds (docstring): nesting depth, tree size, no change to a
    container once it is inside another, no read or allocation beyond the file's bytes.

    Each container built by the file gets a (depth, size): depth 1 + its deepest item's, size 1 + its items'
    sizes (``_shape``; containers of plain values, the common case, are not recorded: (1, 1)). Both are checked
    before the container is built, so a refused file never holds more than ``MAX_DEPTH`` + 1 levels.
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file, size: int, what: str):
        super().__init__(file, encoding="latin1")  # latin1: numpy arrays written by Python 2 load
        self._file = file
        self._size = size
        self._what = what
        self._max_nodes = max(MIN_NODES, NODES_PER_BYTE * size)
        self._shape: dict[int, tuple] = {}   # id -> (object, depth, size); the reference keeps the id unique
        self._sealed: dict[int, object] = {}  # id -> container already placed inside another

    # ---------------------------------------------------------------------------------- declared lengths
    def _available(self) -> int:
        """Bytes the pickle still holds: the rest of the current frame and of the file."""
        frame = getattr(getattr(self, "_unframer", None), "current_frame", None)
        in_frame = frame.getbuffer().nbytes - frame.tell() if frame is not None else 0
        return in_frame + self._size - self._file.tell()

    def _declared_length(self, fmt: str) -> int:
        """Read a length field; UnsafePickleError unless the pickle still holds that many bytes."""
        length = _LENGTH_FIELDS[fmt]
        (n,) = length.unpack(self.read(length.size))
        if n < 0:
            raise pickle.UnpicklingError(f"a negative length ({n})")
        if n > self._available():
            raise UnsafePickleError(f"the pickle declares {n} bytes, but only {self._available()} remain (truncated "
                                    "or corrupt)")
        return n

    def _load_sized(self, opcode: bytes):
        fmt, make = _SIZED_OPCODES[opcode]
        self.append(make(self, self.read(self._declared_length(fmt))))

    def _load_frame(self):
        self._unframer.load_frame(self._declared_length("<Q"))

    # ---------------------------------------------------------------------------------- depth and size
    def _measure(self, value) -> tuple[int, int]:
        entry = self._shape.get(id(value))
        if entry is not None:
            return entry[1], entry[2]
        return (1, 1) if isinstance(value, self._container_types) else (0, 0)

    _container_types = _CONTAINERS

    def _contain(self, items) -> tuple[int, int]:
        """(depth, size) of a new container of ``items``, checked; the items are sealed (never changed again)."""
        depth, size = 1, 1
        shape, container_types = self._shape, self._container_types
        for item in items:
            if type(item) in _PLAIN:
                continue
            entry = shape.get(id(item))
            if entry is not None:
                d, n = entry[1], entry[2]
            elif isinstance(item, container_types):
                d, n = 1, 1
            else:
                continue
            if d >= depth:
                depth = d + 1
            size += n
            if not isinstance(item, (tuple, frozenset)):
                self._sealed[id(item)] = item
        if depth > MAX_DEPTH:
            raise UnsafePickleError(f"containers nested more than {MAX_DEPTH} levels deep (our files nest fewer "
                                    "than 10; a deeper one can crash Python)")
        if size > self._max_nodes:
            raise UnsafePickleError(f"the pickle expands to more than {self._max_nodes} containers (shared "
                                    "containers referenced over and over)")
        return depth, size

    def _record(self, value, depth: int, size: int) -> None:
        if depth > 1 or size > 1:
            self._shape[id(value)] = (value, depth, size)

    def _grow(self, target, items) -> None:
        """Before ``items`` go into the existing ``target``: refuse if ``target`` sits inside another container,
        else record its new (depth, size)."""
        if id(target) in self._sealed:
            raise UnsafePickleError("a container is changed after it was placed inside another (its nesting could "
                                    "grow unchecked)")
        depth, size = self._contain(items)
        old_depth, old_size = self._measure(target)
        depth, size = max(depth, old_depth), size + old_size - 1
        if size > self._max_nodes:
            raise UnsafePickleError(f"the pickle expands to more than {self._max_nodes} containers")
        self._record(target, depth, size)

    def _push_new(self, make, items) -> None:
        depth, size = self._contain(items)
        value = make(items)
        self._record(value, depth, size)
        self.append(value)

    def _load_tuple(self):
        self._push_new(tuple, self.pop_mark())

    def _load_tuple_n(self, n: int):
        stack = self.stack
        if len(stack) < n:
            raise pickle.UnpicklingError(f"TUPLE{n} with {len(stack)} item(s) on the stack")
        value = tuple(stack[-n:])
        del stack[-n:]
        depth, size = self._contain(value)
        if depth > 1 or size > 1:
            self._shape[id(value)] = (value, depth, size)
        stack.append(value)

    def _load_frozenset(self):
        self._push_new(frozenset, self.pop_mark())

    def _load_list(self):
        self._push_new(list, self.pop_mark())

    def _load_dict(self):
        self._push_new(lambda items: {items[i]: items[i + 1] for i in range(0, len(items), 2)}, self.pop_mark())

    def _load_append(self):
        self._grow(self.stack[-2], self.stack[-1:])
        pickle._Unpickler.load_append(self)

    def _load_setitem(self):
        self._grow(self.stack[-3], self.stack[-2:])
        pickle._Unpickler.load_setitem(self)

    def _load_many(self, default):
        """APPENDS / SETITEMS / ADDITEMS: the items above the last mark go into the object below it."""
        self._grow(self.metastack[-1][-1] if self.metastack and self.metastack[-1] else None, self.stack)
        default(self)

    def _load_call(self, default, pops: int):
        """REDUCE / NEWOBJ / NEWOBJ_EX: the result is as deep as the arguments' deepest item."""
        args = self.stack[-pops:]
        depth, size = self._contain(args)
        default(self)
        if depth > 2:
            self._record(self.stack[-1], depth - 1, size)

    def _load_build(self):
        self._grow(self.stack[-2], self.stack[-1:])
        pickle._Unpickler.load_build(self)

    def _load_bytearray8(self):
        """BYTEARRAY8 (protocol 5 numpy data) read straight into its buffer, after checking that the file holds
        the declared size; the pure-Python default reads it into a temporary bytes object first, doubling peak
        memory on a multi-GB GloVe matrix."""
        unframer = getattr(self, "_unframer", None)
        if unframer is None or not hasattr(unframer, "current_frame"):  # a Python whose internals differ
            return pickle._Unpickler.load_bytearray8(self)
        size = self._declared_length("<Q")
        frame = unframer.current_frame
        buffer = bytearray(size)
        if frame is not None:
            n = frame.readinto(buffer)
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

    dispatch[pickle.TUPLE[0]] = _load_tuple
    dispatch[pickle.TUPLE1[0]] = lambda self: self._load_tuple_n(1)
    dispatch[pickle.TUPLE2[0]] = lambda self: self._load_tuple_n(2)
    dispatch[pickle.TUPLE3[0]] = lambda self: self._load_tuple_n(3)
    dispatch[pickle.FROZENSET[0]] = _load_frozenset
    dispatch[pickle.LIST[0]] = _load_list
    dispatch[pickle.DICT[0]] = _load_dict
    dispatch[pickle.APPEND[0]] = _load_append
    dispatch[pickle.SETITEM[0]] = _load_setitem
    dispatch[pickle.APPENDS[0]] = lambda self: self._load_many(pickle._Unpickler.load_appends)
    dispatch[pickle.SETITEMS[0]] = lambda self: self._load_many(pickle._Unpickler.load_setitems)
    dispatch[pickle.ADDITEMS[0]] = lambda self: self._load_many(pickle._Unpickler.load_additems)
    dispatch[pickle.REDUCE[0]] = lambda self: self._load_call(type(self).reduce_default, 1)
    dispatch[pickle.NEWOBJ[0]] = lambda self: self._load_call(pickle._Unpickler.load_newobj, 2)
    dispatch[pickle.NEWOBJ_EX[0]] = lambda self: self._load_call(pickle._Unpickler.load_newobj_ex, 3)
    dispatch[pickle.BUILD[0]] = lambda self: self._load_build()
    dispatch[pickle.BYTEARRAY8[0]] = _load_bytearray8
    dispatch[pickle.FRAME[0]] = _load_frame
    for _op in _SIZED_OPCODES:
        dispatch[_op[0]] = lambda self, _op=_op: self._load_sized(_op)
    for _op in (pickle.INST, pickle.OBJ):  # old-style instances: never written for the types allowed here
        dispatch[_op[0]] = lambda self: (_ for _ in ()).throw(
            UnsafePickleError("the pickle uses INST/OBJ (old-style instances), which no allowed type needs"))

    reduce_default = pickle._Unpickler.load_reduce


def _check_array_state(state) -> None:
    """Refuse an ndarray state whose shape does not match its data, before numpy allocates the shape."""
    if not (isinstance(state, tuple) and len(state) in (4, 5)):
        raise UnsafePickleError(f"unsupported numpy array state {short_repr(state)}")
    shape, dtype, _, data = state[-4:]
    if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape) and isinstance(dtype, np.dtype)):
        raise UnsafePickleError(f"malformed numpy array state {short_repr(state)}")
    count = math.prod(shape)
    if dtype.hasobject:
        if not (isinstance(data, list) and len(data) == count):
            raise UnsafePickleError(f"a numpy object array of shape {shape} whose state holds "
                                    f"{len(data) if isinstance(data, list) else short_repr(data)} items")
    elif not (isinstance(data, (bytes, bytearray, str)) and len(data) == count * dtype.itemsize):
        raise UnsafePickleError(f"a numpy array of shape {shape} and dtype {dtype} whose state holds "
                                f"{len(data) if isinstance(data, (bytes, bytearray, str)) else short_repr(data)} "
                                f"bytes instead of {count * dtype.itemsize}")


class _RestrictedUnpickler(_BoundedUnpickler):
    """Globals only from ``_ALLOWED_GLOBALS``, dtype states validated before use, array states checked against
    their shape, within the bounds of ``_BoundedUnpickler``."""

    dispatch = dict(_BoundedUnpickler.dispatch)

    def __init__(self, file, size: int, path: Path):
        super().__init__(file, size, str(path))
        self._path = path
        self.memo = _DtypeMemo()
        self._settled_dtypes: dict[int, np.dtype] = {}  # built or used by an array/scalar: never built again

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self._path}: refused to load: the pickle names the global '{_clip(module)}.{_clip(name)}'"
                ", which could run code; only plain containers, numbers, strings and numpy arrays are allowed"
            ) from None

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self._path}: refused to load: the pickle uses persistent ids ({short_repr(pid)})")

    def _settle(self, value) -> None:
        """Mark ``value`` (if a dtype) as built or in use, so that no later BUILD may change it."""
        if isinstance(value, np.dtype):
            self._settled_dtypes[id(value)] = value  # the reference keeps the id from being reused

    def reduce_default(self):
        """REDUCE: the default, after marking the dtype handed to ``_frombuffer``/``scalar`` as in use."""
        position = _DTYPE_ARGUMENT_OF.get(id(self.stack[-2]))
        args = self.stack[-1]
        if position is not None and isinstance(args, tuple) and len(args) > position:
            self._settle(args[position])
        pickle._Unpickler.load_reduce(self)

    def _load_build(self):
        """BUILD: a dtype is replaced by a new, validated dtype made from the state (never changed in place);
        an array's state is checked against its shape and marks its dtype as in use; anything else gets the
        default behaviour."""
        inst = self.stack[-2]
        if isinstance(inst, np.dtype):
            state = self.stack.pop()
            if id(inst) in self._settled_dtypes:
                raise UnsafePickleError(f"a BUILD on the numpy dtype {inst} after it was built or used by an array "
                                        "(that would reinterpret the array's bytes)")
            canonical = _canonical_dtype(inst, state)
            if canonical.num != inst.num:  # e.g. a float dtype given a structured state
                raise UnsafePickleError(f"numpy dtype state {short_repr(state)} does not fit a {inst} dtype")
            self.stack[-1] = canonical
            self.memo.replace_dtype(inst, canonical)
            self._settle(inst)
            self._settle(canonical)
            return
        if isinstance(inst, np.ndarray):
            _check_array_state(self.stack[-1])
            for item in self.stack[-1]:
                self._settle(item)
        _BoundedUnpickler._load_build(self)


class _Opaque:
    """Stands for whatever a global, a call or a persistent id makes in a pickle checked for its bounds only."""

    def __call__(self, *args, **kwargs):
        return _Opaque()

    def __setitem__(self, key, value):
        pass

    def append(self, value):
        pass

    def extend(self, values):
        pass

    def add(self, value):
        pass

    def __setstate__(self, state):
        pass


class _BoundsOnlyUnpickler(_BoundedUnpickler):
    """Reads a pickle for its bounds alone: every global, call and persistent id becomes an inert ``_Opaque``
    (nothing named by the file is imported or called)."""

    dispatch = dict(_BoundedUnpickler.dispatch)
    _container_types = (*_CONTAINERS, _Opaque)

    def find_class(self, module, name):
        return _Opaque()

    def _load_new_opaque(self, pops: int):
        """NEWOBJ / NEWOBJ_EX: an ``_Opaque`` as deep as the arguments (the class is never instantiated)."""
        depth, size = self._contain(self.stack[-pops:])
        del self.stack[-pops:]
        value = _Opaque()
        self._record(value, depth, size)
        self.append(value)

    dispatch[pickle.NEWOBJ[0]] = lambda self: self._load_new_opaque(2)
    dispatch[pickle.NEWOBJ_EX[0]] = lambda self: self._load_new_opaque(3)

    def persistent_load(self, pid):
        return _Opaque()


def _decode_error(what: str, e: BaseException) -> UnsafePickleError:
    """One ``UnsafePickleError`` line naming ``what`` for any failure to read a pickle."""
    if isinstance(e, UnsafePickleError):
        return e if what in str(e) else UnsafePickleError(f"{what}: refused to load: {e}")
    if isinstance(e, MemoryError):
        return UnsafePickleError(f"{what}: not a readable pickle (it asks for more memory than there is; "
                                 "truncated or corrupt?)")
    if isinstance(e, RecursionError):
        return UnsafePickleError(f"{what}: not a readable pickle (nested too deeply)")
    reason = " ".join(f"{type(e).__name__}: {e}".split())[:300]
    return UnsafePickleError(f"{what}: not a readable pickle ({reason})")


def check_pickle_bounds(data: bytes, what: str) -> None:
    """Raise ``UnsafePickleError`` naming ``what`` if the pickle ``data`` breaks this module's bounds (nesting,
    tree size, declared lengths) or is not a readable pickle; its globals and persistent ids are not checked (and
    never imported or called): that is left to the loader that reads it next."""
    try:
        _BoundsOnlyUnpickler(io.BytesIO(data), len(data), what).load()
    except Exception as e:  # noqa: BLE001 - every failure to decode means "bad file"
        raise _decode_error(what, e) from None


def check_torch_file_bounds(path, require_zip: bool = True) -> None:
    """Check the pickle inside a torch zip file (``torch.save``'s format since PyTorch 1.6: ``<name>/data.pkl``
    beside the tensor data) against this module's bounds before ``torch.load(weights_only=True)`` reads it: that
    loader limits which globals a file may name, but neither nesting (a deeply nested key crashes it) nor sizes.
    Raises ``UnsafePickleError`` naming the file when it is no such zip file or breaks the bounds;
    ``require_zip=False`` lets a file of torch's older (non-zip) format through unchecked (published weights).
    """
    path = Path(path)
    if not require_zip and not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            entries = [info for info in archive.infolist() if info.filename.endswith("data.pkl")
                       and info.filename.count("/") == 1]
            if len(entries) != 1:
                raise UnsafePickleError(f"{path}: not a torch zip file (no single <name>/data.pkl entry)")
            if entries[0].file_size > os.path.getsize(path):
                raise UnsafePickleError(f"{path}: its data.pkl declares {entries[0].file_size} bytes, more than the "
                                        "whole file (torch stores it uncompressed)")
            data = archive.read(entries[0])
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, ValueError) as e:
        raise UnsafePickleError(f"{path}: not a torch zip file, or a damaged one ({short_repr(str(e), 200)})") from None
    check_pickle_bounds(data, f"{path}: data.pkl")


def load_pickle(path) -> object:
    """Load a pickle holding only plain containers, numbers, strings and numpy arrays/dtypes/scalars.

    Raises ``UnsafePickleError`` naming the file (and the refused global) if the file names anything else, breaks
    the module's bounds or is not a readable pickle; ``FileNotFoundError`` if it does not exist.
    """
    path = Path(path)
    with open(path, "rb") as f:
        try:
            return _RestrictedUnpickler(f, os.fstat(f.fileno()).st_size, path).load()
        except Exception as e:  # noqa: BLE001 - struct.error, EOFError, UnicodeDecodeError, ...: all mean "bad file"
            raise _decode_error(str(path), e) from None


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
