"""The MXNet .params reader/writer: round trips, MXNet itself, and hostile input."""

import struct
import subprocess

import numpy as np
import pytest

from kseg.weights.mxnet_params import params_to_bytes, read_params, read_params_list, write_params

DTYPES = ["float32", "float64", "float16", "uint8", "int32", "int8", "int64"]


def sample_arrays():
    rng = np.random.default_rng(0)
    return {
        "conv1.0.weight": rng.standard_normal((4, 3, 3, 3)).astype("float32"),
        "conv1.1.gamma": rng.standard_normal(4).astype("float32"),
        "head.block.4.bias": np.arange(5, dtype="int64"),
    }


@pytest.mark.parametrize("version", [0, 1, 2, 3])
@pytest.mark.parametrize("dtype", DTYPES)
def test_roundtrip_every_dtype_and_version(version, dtype):
    arrays = {
        "a": (np.arange(24) % 7).astype(dtype).reshape(2, 3, 4),
        "b": np.ones(3, dtype),
        "c": np.zeros((1, 1), dtype),
    }
    restored = read_params(params_to_bytes(arrays, version))
    assert list(restored) == list(arrays)
    for key, value in arrays.items():
        assert restored[key].dtype == value.dtype
        np.testing.assert_array_equal(restored[key], value)


def test_scalar_needs_version_3():
    assert read_params(params_to_bytes({"s": np.float32(2.5)}, 3))["s"].shape == ()
    with pytest.raises(ValueError, match="0-d"):
        params_to_bytes({"s": np.float32(2.5)}, 2)


def test_bfloat16_flag_reads_as_float32():
    values = np.array([1.5, -2.0, 3.25], "float32")
    raw = (values.view(np.uint32) >> 16).astype("<u2")
    data = struct.pack("<QQQ", 0x112, 0, 1) + struct.pack("<Iiiq", 0xF993FAC9, 0, 1, 3) + struct.pack("<iii", 1, 0, 12)
    data += raw.tobytes() + struct.pack("<Q", 1) + struct.pack("<Q", 1) + b"w"
    np.testing.assert_array_equal(read_params(data)["w"], values)


def test_atomic_write(tmp_path):
    path = tmp_path / "x.params"
    write_params(path, sample_arrays())
    assert [p.name for p in tmp_path.iterdir()] == ["x.params"]
    with pytest.raises(ValueError):
        write_params(path, {"bad": np.array(["text"])})
    assert [p.name for p in tmp_path.iterdir()] == ["x.params"]


def test_every_truncation_is_a_value_error():
    data = params_to_bytes(sample_arrays())
    for length in range(len(data)):
        with pytest.raises(ValueError):
            read_params(data[:length])


def test_random_corruption_never_crashes():
    data = bytearray(params_to_bytes(sample_arrays()))
    rng = np.random.default_rng(1)
    for _ in range(400):
        corrupt = bytearray(data)
        for position in rng.integers(0, len(data), size=rng.integers(1, 4)):
            corrupt[position] = int(rng.integers(0, 256))
        try:
            read_params(bytes(corrupt))
        except ValueError:
            pass


def header(count):
    return struct.pack("<QQQ", 0x112, 0, count)


@pytest.mark.parametrize(
    "data,message",
    [
        (header(2**62), "cannot fit"),
        (header(1) + struct.pack("<Iii", 0xF993FAC9, 0, 2**31 - 1), "ndim"),
        (header(1) + struct.pack("<Iiiqq", 0xF993FAC9, 0, 2, 2**62, 2**62) + struct.pack("<iii", 1, 0, 0), "needs"),
        (header(1) + struct.pack("<Iiiq", 0xF993FAC9, 0, 1, -5), "negative"),
        (
            header(1) + struct.pack("<Iiiq", 0xF993FAC9, 0, 1, 1) + struct.pack("<iii", 1, 0, 99) + b"\0" * 4,
            "dtype flag 99",
        ),
        (header(1) + struct.pack("<Iiiq", 0xF993FAC9, 2, 1, 1), "sparse"),
        (header(0) + struct.pack("<QQ", 1, 2**63), "1 names for 0 arrays"),
        (struct.pack("<QQQ", 0x113, 0, 0), "list magic"),
        (header(0) + struct.pack("<Q", 0) + b"junk", "unexpected bytes"),
        (header(1) + struct.pack("<I", 0xDEADBEEF), "unknown magic"),
    ],
)
def test_hostile_headers_fail_fast(data, message):
    with pytest.raises(ValueError, match=message):
        read_params(data)


def test_names_are_checked():
    body = struct.pack("<Iiiq", 0xF993FAC9, 0, 1, 1) + struct.pack("<iii", 1, 0, 0) + b"\0" * 4
    with pytest.raises(ValueError, match="name 0 needs 9223372036854775808 bytes"):
        read_params(header(1) + body + struct.pack("<QQ", 1, 2**63))
    with pytest.raises(ValueError, match="UTF-8"):
        read_params(header(1) + body + struct.pack("<QQ", 1, 2) + b"\xff\xfe")
    twice = header(2) + body + body + struct.pack("<QQ", 2, 1) + b"a" + struct.pack("<Q", 1) + b"a"
    with pytest.raises(ValueError, match="twice"):
        read_params(twice)
    arrays, names = read_params_list(header(1) + body + struct.pack("<Q", 0))
    assert names == [] and arrays[0].shape == (1,)
    with pytest.raises(ValueError, match="no names"):
        read_params(header(1) + body + struct.pack("<Q", 0))


def test_missing_path_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.params"):
        read_params(tmp_path / "nope.params")
    with pytest.raises(IsADirectoryError):
        read_params(tmp_path)


def test_strip_prefixes():
    data = params_to_bytes({"arg:conv_weight": np.ones(2, "float32"), "aux:bn_moving_mean": np.zeros(2, "float32")})
    assert list(read_params(data, strip_prefixes=True)) == ["conv_weight", "bn_moving_mean"]


MXNET_SCRIPT = """
import sys, numpy as np, mxnet as mx
from mxnet.gluon import nn
mode, path = sys.argv[1], sys.argv[2]
if mode == "save":
    arrays = {k: mx.nd.array(np.arange(6).reshape(2, 3) % 5, dtype=k) for k in
              ["float32", "float64", "float16", "uint8", "int32", "int8", "int64"]}
    mx.nd.save(path, arrays)
elif mode == "gluon":
    net = nn.HybridSequential()
    net.add(nn.Conv2D(4, 3, in_channels=3), nn.BatchNorm(in_channels=4), nn.Dense(2, in_units=4))
    net.initialize()
    net.save_parameters(path)
    print(",".join(net._collect_params_with_prefix()))
else:
    loaded = mx.nd.load(path)
    for key, value in sorted(loaded.items()):
        print(key, np.dtype(value.dtype).name, value.shape, value.asnumpy().ravel().tolist())
"""


@pytest.mark.gluoncv
def test_mxnet_reads_ours_and_we_read_mxnet(side_python, tmp_path):
    saved = tmp_path / "mx.params"
    subprocess.run([side_python, "-c", MXNET_SCRIPT, "save", str(saved)], check=True, capture_output=True)
    for dtype, value in read_params(saved).items():
        assert value.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(value, (np.arange(6).reshape(2, 3) % 5).astype(dtype))

    ours = tmp_path / "ours.params"
    arrays = {
        "w": np.arange(6, dtype="float32").reshape(2, 3),
        "i": np.array([3, -1], "int64"),
        "h": np.ones(2, "float16"),
    }
    write_params(ours, arrays)
    lines = subprocess.run(
        [side_python, "-c", MXNET_SCRIPT, "load", str(ours)], check=True, capture_output=True, text=True
    ).stdout.splitlines()
    assert lines == [
        "h float16 (2,) [1.0, 1.0]",
        "i int64 (2,) [3, -1]",
        "w float32 (2, 3) [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]",
    ]


@pytest.mark.gluoncv
def test_gluon_save_parameters_names(side_python, tmp_path):
    path = tmp_path / "net.params"
    result = subprocess.run(
        [side_python, "-c", MXNET_SCRIPT, "gluon", str(path)], check=True, capture_output=True, text=True
    )
    expected = result.stdout.strip().splitlines()[-1].split(",")
    arrays = read_params(path)
    assert list(arrays) == expected
    assert arrays["0.weight"].shape == (4, 3, 3, 3) and "1.running_var" in arrays
