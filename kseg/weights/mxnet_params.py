"""A pure-numpy reader and writer of MXNet ``.params`` (NDArray list) files.

GluonCV's zoo files are written by ``save_parameters``: MXNet's NDArray list
format, read here without MXNet (which needs numpy<1.24). Layout, little-endian
(MXNet 1.9.1 ``src/ndarray/ndarray.cc``):

- ``uint64 0x112`` (list magic), ``uint64 0`` (reserved), ``uint64 N``;
- N arrays, each one of:
  - V2 ``uint32 0xF993FAC9`` / V3 ``0xF993FACA``: ``int32`` storage type (0 dense),
    shape (``int32 ndim``, ``ndim x int64``), then unless the shape is unknown
    ("none" array: V2 ndim 0, V3 ndim -1 or a -1 dim) ``int32 dev_type``,
    ``int32 dev_id``, ``int32`` dtype flag and the raw C-order data;
  - V1 ``uint32 0xF993FAC8``: as V2 without the storage type;
  - legacy (no magic): the first ``uint32`` is ndim, dims are ``uint32``;
- ``uint64`` name count (0 or N), then each name as ``uint64`` length + UTF-8 bytes.

Every count and size is checked against the bytes that remain before anything
is allocated, so a corrupt, truncated or hostile file raises ``ValueError``
saying what is wrong and where.
"""

import os
import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from kseg.utils.io import write_atomic

LIST_MAGIC = 0x112
V1_MAGIC = 0xF993FAC8
V2_MAGIC = 0xF993FAC9
V3_MAGIC = 0xF993FACA
MAX_NDIM = 32

# mshadow type flags; 12 (bfloat16) is read into float32.
DTYPES = {
    0: np.dtype("<f4"),
    1: np.dtype("<f8"),
    2: np.dtype("<f2"),
    3: np.dtype("u1"),
    4: np.dtype("<i4"),
    5: np.dtype("i1"),
    6: np.dtype("<i8"),
    7: np.dtype("?"),
    8: np.dtype("<i2"),
    9: np.dtype("<u2"),
    10: np.dtype("<u4"),
    11: np.dtype("<u8"),
    12: np.dtype("<u2"),
}
BFLOAT16_FLAG = 12
DTYPE_FLAGS = {dtype: flag for flag, dtype in DTYPES.items() if flag != BFLOAT16_FLAG}


class _Reader:
    """Bounds-checked little-endian reads over a bytes buffer."""

    def __init__(self, data: bytes):
        self.data = memoryview(data)
        self.offset = 0

    @property
    def remaining(self) -> int:
        return len(self.data) - self.offset

    def take(self, size: int, what: str) -> memoryview:
        if size < 0 or size > self.remaining:
            raise ValueError(
                f"truncated .params file: {what} needs {size} bytes at offset {self.offset} "
                f"but only {self.remaining} remain"
            )
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk

    def unpack(self, fmt: str, what: str):
        values = struct.unpack(fmt, self.take(struct.calcsize(fmt), what))
        return values[0] if len(values) == 1 else values


def _read_shape(reader: _Reader, what: str, legacy_ndim: int | None = None) -> tuple[int, ...] | None:
    """A shape, or None for an unknown ("none") shape."""
    if legacy_ndim is not None:
        ndim, dim_format = legacy_ndim, "I"
    else:
        ndim, dim_format = reader.unpack("<i", f"{what} ndim"), "q"
    if ndim == -1:
        return None
    if not 0 <= ndim <= MAX_NDIM:
        raise ValueError(f"corrupt .params file: {what} has ndim {ndim} (expected 0..{MAX_NDIM})")
    dims = reader.unpack(f"<{ndim}{dim_format}", f"{what} shape") if ndim else ()
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    if any(d == -1 for d in dims):
        return None
    if any(d < 0 for d in dims):
        raise ValueError(f"corrupt .params file: {what} has a negative dimension in {dims}")
    return dims


def _read_array(reader: _Reader, index: int) -> np.ndarray | None:
    what = f"array {index}"
    magic = reader.unpack("<I", f"{what} magic")
    if magic in (V2_MAGIC, V3_MAGIC):
        storage = reader.unpack("<i", f"{what} storage type")
        if storage != 0:
            raise ValueError(f"unsupported .params file: {what} has sparse storage type {storage}")
        shape = _read_shape(reader, what)
        if shape is None or (magic == V2_MAGIC and len(shape) == 0):
            return None
    elif magic == V1_MAGIC:
        shape = _read_shape(reader, what)
        if not shape:
            return None
    else:
        # Legacy files have no magic: the word just read is ndim, dims are uint32.
        if magic > MAX_NDIM:
            raise ValueError(
                f"corrupt .params file: {what} starts with unknown magic {magic:#x} at offset {reader.offset - 4}"
            )
        shape = _read_shape(reader, what, legacy_ndim=magic)
        if not shape:
            return None
    reader.unpack("<ii", f"{what} context")
    flag = reader.unpack("<i", f"{what} dtype")
    if flag not in DTYPES:
        raise ValueError(f"unsupported .params file: {what} has unknown dtype flag {flag}")
    dtype = DTYPES[flag]
    count = 1
    for d in shape:
        count *= d
    raw = reader.take(count * dtype.itemsize, f"{what} data ({shape}, {dtype})")
    array = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
    if flag == BFLOAT16_FLAG:
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return array


def read_params_list(source) -> tuple[list[np.ndarray | None], list[str]]:
    """Arrays (None for "none" arrays) and names (possibly empty) of a ``.params`` file or bytes."""
    data = source if isinstance(source, bytes | bytearray) else _read_file(source)
    reader = _Reader(data)
    magic, _reserved = reader.unpack("<QQ", "header")
    if magic != LIST_MAGIC:
        raise ValueError(f"not an MXNet .params file: list magic is {magic:#x}, expected {LIST_MAGIC:#x}")
    count = reader.unpack("<Q", "array count")
    if count > reader.remaining // 4:
        raise ValueError(f"corrupt .params file: {count} arrays cannot fit in {reader.remaining} bytes")
    arrays = [_read_array(reader, i) for i in range(count)]
    name_count = reader.unpack("<Q", "name count")
    if name_count not in (0, count):
        raise ValueError(f"corrupt .params file: {name_count} names for {count} arrays")
    names = []
    for i in range(name_count):
        length = reader.unpack("<Q", f"name {i} length")
        raw = reader.take(length, f"name {i}")
        try:
            names.append(bytes(raw).decode("utf-8"))
        except UnicodeDecodeError:
            raise ValueError(f"corrupt .params file: name {i} is not valid UTF-8") from None
    if reader.remaining:
        raise ValueError(f"corrupt .params file: {reader.remaining} unexpected bytes after the names")
    return arrays, names


def read_params(source, strip_prefixes: bool = False) -> dict[str, np.ndarray]:
    """``{name: array}`` of a ``.params`` file (path or bytes), in file order.

    ``strip_prefixes`` drops the ``arg:``/``aux:`` prefixes of symbol exports.
    """
    arrays, names = read_params_list(source)
    if len(names) != len(arrays):
        raise ValueError(f"the .params file has {len(arrays)} arrays but no names")
    result = {}
    for name, array in zip(names, arrays, strict=True):
        if array is None:
            raise ValueError(f"the .params file holds an empty (shapeless) array {name!r}")
        if strip_prefixes and name.startswith(("arg:", "aux:")):
            name = name[4:]
        if name in result:
            raise ValueError(f"the .params file holds {name!r} twice")
        result[name] = array
    return result


def _read_file(path) -> bytes:
    path = Path(os.fspath(path))
    if path.is_dir():
        raise IsADirectoryError(f"expected a .params file, got a directory: {path}")
    with open(path, "rb") as f:  # FileNotFoundError names the path
        return f.read()


def _dtype_flag(array: np.ndarray) -> int:
    flag = DTYPE_FLAGS.get(array.dtype.newbyteorder("<"))
    if flag is None:
        raise ValueError(f"MXNet .params cannot store dtype {array.dtype}")
    return flag


def params_to_bytes(arrays: Mapping[str, np.ndarray], version: int = 2) -> bytes:
    """Serialise ``{name: array}`` as MXNet does (``version`` 2 or 3; 1 and 0 (legacy) for tests)."""
    if version not in (0, 1, 2, 3):
        raise ValueError(f"version must be 0, 1, 2 or 3, got {version}")
    parts = [struct.pack("<QQQ", LIST_MAGIC, 0, len(arrays))]
    for name, value in arrays.items():
        array = np.asarray(value)  # not ascontiguousarray: it turns 0-d into 1-d
        flag = _dtype_flag(array)
        if version == 2 and array.ndim == 0:
            raise ValueError(f"{name!r}: version 2 cannot store a 0-d array (use version 3)")
        if version == 3:
            parts.append(struct.pack("<Iii", V3_MAGIC, 0, array.ndim))
        elif version == 2:
            parts.append(struct.pack("<Iii", V2_MAGIC, 0, array.ndim))
        elif version == 1:
            parts.append(struct.pack("<Ii", V1_MAGIC, array.ndim))
        else:
            parts.append(struct.pack("<I", array.ndim))
        parts.append(struct.pack(f"<{array.ndim}{'I' if version == 0 else 'q'}", *array.shape))
        parts.append(struct.pack("<iii", 1, 0, flag))  # cpu(0), dtype
        parts.append(array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes())
    parts.append(struct.pack("<Q", len(arrays)))
    for name in arrays:
        encoded = name.encode("utf-8")
        parts.append(struct.pack("<Q", len(encoded)) + encoded)
    return b"".join(parts)


def write_params(path, arrays: Mapping[str, np.ndarray], version: int = 2) -> None:
    """Write a ``.params`` file atomically (a temp file in the same folder, then rename)."""
    data = params_to_bytes(arrays, version)
    write_atomic(path, data)
