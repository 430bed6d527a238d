"""``weights="pretrained"``: download, verify, unpack, convert and cache, from a loopback model store."""

import dataclasses
import hashlib
import http.server
import io
import os
import socket
import stat
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from kseg.presets import PRESETS, WeightsSource
from kseg.presets.schema import GLUONCV_STORE_URL, store_url
from kseg.weights.download import (
    DownloadError,
    WeightsUnavailableError,
    fetch_pretrained,
)
from kseg.weights.mxnet_params import params_to_bytes

REPO = Path(__file__).resolve().parents[2]
NAME = "fcn_resnet18_tiny"


def tiny_params(seed=0):
    rng = np.random.default_rng(seed)
    arrays = {"conv.weight": rng.standard_normal((8, 3, 3, 3)), "conv.bias": rng.standard_normal(8)}
    return params_to_bytes({key: value.astype("float32") for key, value in arrays.items()})


def sha1_hex(data):
    return hashlib.sha1(data).hexdigest()


def fake_entry(sha1, name=NAME):
    """The weights source of a small model's file."""
    return WeightsSource(name, sha1, "gluoncv_semantic")


def zip_name(entry):
    return entry.archive


def zip_bytes(members):
    """A zip of ``{name: bytes}``; a ``(target, "symlink")`` value makes a symbolic link."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            if isinstance(data, tuple):
                info = zipfile.ZipInfo(name)
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                archive.writestr(info, data[0])
            else:
                archive.writestr(name, data)
    return buffer.getvalue()


class Store:
    """A GluonCV-style model store on 127.0.0.1 serving ``root``; records every GET."""

    def __init__(self, root):
        self.root = root
        self.requests = []
        self.truncate = False  # announce more bytes than sent, then close
        self.release = None  # a threading.Event to wait for before answering
        store = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def log_message(self, *args):
                pass

            def do_GET(self):
                store.requests.append(self.path)
                if store.release is not None:
                    store.release.wait(30)
                file = root / self.path.lstrip("/")
                if store.truncate and file.is_file():
                    body = file.read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body) + 1000))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.close_connection = True
                    return
                super().do_GET()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def publish(self, entry, members):
        """Serve a zip of ``members`` where the store keeps ``entry``'s."""
        path = self.root / "gluon" / "models" / zip_name(entry)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(members if isinstance(members, bytes) else zip_bytes(members))

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("KSEG_HOME", str(home))
    return home


@pytest.fixture
def store(tmp_path, monkeypatch):
    store = Store(tmp_path / "store")
    monkeypatch.setenv("KSEG_MODEL_STORE_URL", store.url)
    yield store
    store.close()


class CopyConvert:
    """A trivial converter: the ``.weights.h5`` holds the ``.params`` bytes."""

    def __init__(self):
        self.calls = 0

    def __call__(self, entry, params, out):
        self.calls += 1
        Path(out).write_bytes(Path(params).read_bytes())


def leftovers(home):
    """Everything in ``home`` but lock files (temporary files are dot-named, so they count)."""
    return sorted(p.name for p in home.iterdir() if not p.name.endswith(".lock")) if home.exists() else []


def test_urls_match_the_zoo_and_the_override(monkeypatch):
    monkeypatch.delenv("KSEG_MODEL_STORE_URL", raising=False)
    assert store_url() == GLUONCV_STORE_URL
    for preset in PRESETS.values():
        assert preset.weights.url == f"{GLUONCV_STORE_URL}gluon/models/{preset.weights.archive}"
    monkeypatch.setenv("KSEG_MODEL_STORE_URL", "http://mirror.example/models")
    entry = PRESETS["fcn_resnet50_ade"].weights
    assert entry.url == "http://mirror.example/models/gluon/models/fcn_resnet50_ade-3479525a.zip"


def test_download_verifies_converts_and_caches(home, store, capsys):
    data = tiny_params()
    entry = fake_entry(sha1_hex(data))
    store.publish(entry, {entry.gluoncv_file: data})
    home.mkdir()
    stale = home / f".{zip_name(entry)}.killed.part"  # left by a process killed mid-download
    stale.write_bytes(b"partial")
    convert = CopyConvert()
    path = fetch_pretrained(entry, progress=True, convert=convert)
    assert path == home / f"{NAME}.weights.h5" and path.read_bytes() == data
    assert (home / entry.gluoncv_file).read_bytes() == data  # the .params is kept
    assert leftovers(home) == sorted([path.name, entry.gluoncv_file])
    assert store.requests == [f"/gluon/models/{zip_name(entry)}"]
    assert store.url in capsys.readouterr().err
    # Cached: no request, no conversion.
    assert fetch_pretrained(entry, convert=convert) == path
    assert len(store.requests) == 1 and convert.calls == 1


def test_sha1_mismatch_keeps_nothing(home, store):
    entry = fake_entry(sha1_hex(b"something else"))
    store.publish(entry, {entry.gluoncv_file: tiny_params()})
    with pytest.raises(DownloadError, match=f"SHA-1 mismatch.*expected {entry.sha1}, got {sha1_hex(tiny_params())}"):
        fetch_pretrained(entry, progress=False, convert=CopyConvert())
    assert leftovers(home) == []


def test_truncated_transfer_keeps_nothing(home, store):
    data = tiny_params()
    entry = fake_entry(sha1_hex(data))
    store.publish(entry, {entry.gluoncv_file: data})
    store.truncate = True
    with pytest.raises(DownloadError, match="Truncated download") as error:
        fetch_pretrained(entry, progress=False, convert=CopyConvert())
    assert store.url in str(error.value)
    assert leftovers(home) == []


@pytest.mark.parametrize(
    "member, reason",
    [
        ("../evil.params", "'..' component"),
        ("models/../../evil.params", "'..' component"),
        ("/tmp/kseg-evil.params", "absolute path"),
        ("link.params", "symbolic link"),
    ],
)
def test_unsafe_zip_members_are_rejected(home, store, tmp_path, member, reason):
    data = tiny_params()
    entry = fake_entry(sha1_hex(data))
    evil = ("/etc/passwd", "symlink") if reason == "symbolic link" else b"evil"
    store.publish(entry, {member: evil, entry.gluoncv_file: data})
    with pytest.raises(DownloadError, match=f"Refusing to unpack.*{reason}"):
        fetch_pretrained(entry, progress=False, convert=CopyConvert())
    assert leftovers(home) == []
    assert [p for p in tmp_path.rglob("*evil*")] == []
    assert not Path("/tmp/kseg-evil.params").exists()


def test_bad_zip_and_missing_member(home, store):
    data = tiny_params()
    entry = fake_entry(sha1_hex(data))
    store.publish(entry, b"PK\x03\x04 not really a zip")
    with pytest.raises(DownloadError, match="not a valid zip"):
        fetch_pretrained(entry, progress=False, convert=CopyConvert())
    store.publish(entry, {"other.params": data})
    with pytest.raises(DownloadError, match=f"should hold one {entry.gluoncv_file}.*'other.params'"):
        fetch_pretrained(entry, progress=False, convert=CopyConvert())
    assert leftovers(home) == []


def test_http_error_says_what_to_download(home, store):
    entry = fake_entry(sha1_hex(b"never published"))
    with pytest.raises(WeightsUnavailableError, match="HTTP 404") as error:
        fetch_pretrained(entry, progress=False, convert=CopyConvert())
    assert entry.url in str(error.value) and str(home) in str(error.value)
    assert leftovers(home) == []


def test_offline_says_which_file_from_where_to_where(home, monkeypatch):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("KSEG_MODEL_STORE_URL", f"http://127.0.0.1:{port}/")
    entry = fake_entry(sha1_hex(b"unreachable"))
    with pytest.raises(FileNotFoundError) as error:  # WeightsUnavailableError is both
        fetch_pretrained(entry, progress=False, convert=CopyConvert())
    assert isinstance(error.value, DownloadError)
    message = str(error.value)
    url = f"http://127.0.0.1:{port}/gluon/models/{zip_name(entry)}"
    assert url in message and str(home) in message and entry.gluoncv_file in message
    assert leftovers(home) == []


def test_user_placed_params_with_wrong_sha1(home, store):
    entry = fake_entry(sha1_hex(b"the published file"))
    home.mkdir()
    placed = home / entry.gluoncv_file
    placed.write_bytes(tiny_params())
    with pytest.raises(DownloadError) as error:
        fetch_pretrained(entry, progress=False, convert=CopyConvert())
    message = str(error.value)
    assert str(placed) in message and entry.sha1 in message and sha1_hex(tiny_params()) in message
    assert store.requests == [] and leftovers(home) == [placed.name]  # the user's file stays


@pytest.mark.parametrize("placed", ["params", "zip"])
def test_user_placed_files_are_used_without_downloading(home, store, placed):
    data = tiny_params()
    entry = fake_entry(sha1_hex(data))
    home.mkdir()
    if placed == "params":
        (home / entry.gluoncv_file).write_bytes(data)
    else:
        (home / zip_name(entry)).write_bytes(zip_bytes({entry.gluoncv_file: data}))
    path = fetch_pretrained(entry, progress=False, convert=CopyConvert())
    assert path.read_bytes() == data and (home / entry.gluoncv_file).read_bytes() == data
    assert store.requests == []


CHILD = """
import sys
from pathlib import Path
from kseg.presets import WeightsSource
from kseg.weights.download import fetch_pretrained

def convert(entry, params, out):
    Path(out).write_bytes(Path(params).read_bytes())

entry = WeightsSource(sys.argv[1], sys.argv[2], "gluoncv_semantic")
print(fetch_pretrained(entry, progress=False, convert=convert))
assert "tensorflow" not in sys.modules  # the cache and the download need no TensorFlow
"""


def test_two_processes_download_once(home, store, tmp_path):
    data = tiny_params()
    entry = fake_entry(sha1_hex(data))
    store.publish(entry, {entry.gluoncv_file: data})
    # The store answers only once the other process waits on the lock, so the two surely overlap.
    store.release = threading.Event()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    children, stderr = [], [[], []]

    def watch(child, lines):
        for line in child.stderr:
            lines.append(line)
            if "Waiting for another process" in line:
                store.release.set()

    watchers = []
    for i in range(2):
        out = open(tmp_path / f"child{i}.out", "w")
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, NAME, entry.sha1],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        out.close()
        children.append(child)
        watchers.append(threading.Thread(target=watch, args=(child, stderr[i]), daemon=True))
        watchers[-1].start()
    for child, watcher in zip(children, watchers, strict=True):
        assert child.wait(60) == 0, "".join(stderr[children.index(child)])
        watcher.join(5)
    expected = str(home / f"{NAME}.weights.h5")
    assert [(tmp_path / f"child{i}.out").read_text().strip() for i in range(2)] == [expected, expected]
    assert store.requests == [f"/gluon/models/{zip_name(entry)}"]
    assert any("Waiting for another process" in line for lines in stderr for line in lines)
    assert Path(expected).read_bytes() == data and leftovers(home) == sorted([entry.gluoncv_file, Path(expected).name])


def test_pretrained_end_to_end_through_the_registry(home, store, monkeypatch):
    """``kseg.models.get(name, weights="pretrained")`` with the default converter, on a resnet18 FCN."""
    import kseg
    from kseg.weights.gluoncv import gluoncv_arrays

    source = kseg.models.build("fcn", "resnet18_v1b", 21, name=NAME)
    data = params_to_bytes(gluoncv_arrays(source))
    entry = fake_entry(sha1_hex(data))
    preset = dataclasses.replace(
        PRESETS["fcn_resnet101_voc"],
        name=NAME,
        architecture={"method": "fcn", "backbone": "resnet18_v1b", "aux": False, "output_stride": 8},
        weights=entry,
    )
    monkeypatch.setitem(PRESETS, NAME, preset)
    store.publish(entry, {entry.gluoncv_file: data})
    model = kseg.models.get(NAME, weights="pretrained")
    images = np.random.default_rng(0).standard_normal((1, 33, 41, 3)).astype("float32")
    np.testing.assert_allclose(model(images, training=False), source(images, training=False), atol=1e-5)
    assert leftovers(home) == sorted([entry.gluoncv_file, f"{NAME}.weights.h5"])
    again = kseg.models.get(NAME, weights="pretrained")
    np.testing.assert_allclose(again(images, training=False), source(images, training=False), atol=1e-5)
    assert len(store.requests) == 1
