"""``weights="pretrained"``: find, download, verify and convert GluonCV's published files.

:func:`fetch_pretrained` resolves a :class:`kseg.presets.WeightsSource` to a
file in ``$KSEG_HOME`` (default ``~/.kseg``), in this order:

1. ``{name}.weights.h5``, converted earlier: returned as is;
2. GluonCV's ``{name}-{sha1[:8]}.params`` (or ``{name}.params``) put there by
   hand: its SHA-1 is checked, then it is converted;
3. GluonCV's ``{name}-{sha1[:8]}.zip`` put there by hand: its ``.params`` is
   extracted, checked and converted;
4. otherwise the zip is downloaded from ``source.url`` (GluonCV's model store;
   ``$KSEG_MODEL_STORE_URL`` overrides the base URL), then as 3.

The caller supplies the conversion (``convert(source, params_path, out_path)``):
building the model is the model registry's business, not this module's. The
``.params`` stays next to the converted ``.weights.h5``. The whole fetch runs
under an exclusive lock (``$KSEG_HOME/.{name}.lock``), so a second process
waits and then finds the converted file. Every file is written to a dot-named
temporary file in ``$KSEG_HOME`` and renamed when complete and verified; after
any failure nothing half-written remains (lock files, dot-named, may).
"""

import contextlib
import hashlib
import http.client
import os
import re
import stat
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from kseg.presets.schema import STORE_URL_ENV
from kseg.utils.io import atomic_path
from kseg.utils.paths import kseg_home

CHUNK_SIZE = 1 << 20
TIMEOUT_S = 60


class DownloadError(RuntimeError):
    """Pretrained weights could not be fetched, verified or unpacked."""


class WeightsUnavailableError(DownloadError, FileNotFoundError):
    """The file is neither cached nor downloadable (offline, HTTP error).

    Also a ``FileNotFoundError``, which is what a missing pretrained file raised
    before downloads existed.
    """


def sha1_of(path, chunk=CHUNK_SIZE):
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fetch_pretrained(source, convert, progress=True, home=None):
    """The converted ``.weights.h5`` of ``source`` in ``home`` (default :func:`kseg.utils.kseg_home`).

    Args:
        source: a :class:`kseg.presets.WeightsSource` (``name``, ``sha1``,
            ``gluoncv_file``, ``archive``, ``url``).
        convert: ``convert(source, params_path, out_path)`` writes the Keras
            weights file at ``out_path``.
        progress: show a progress bar while downloading.
        home: the cache folder.

    Raises:
        WeightsUnavailableError: offline or the store refused (says what to
            download from where, and where to put it).
        DownloadError: a corrupt, truncated or unsafe download or local file.
    """
    home = Path(os.fspath(home)) if home is not None else kseg_home()
    converted = home / f"{source.name}.weights.h5"
    if converted.is_file():
        return converted
    home.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(home / f".{source.name}.lock", source.name):
        if converted.is_file():  # another process finished while we waited
            return converted
        _remove_stale_temporaries(source, home)
        params = _local_params(source, home, progress)
        with atomic_path(converted, suffix=".weights.h5") as tmp:
            convert(source, params, tmp)
            if not os.path.isfile(tmp) or os.path.getsize(tmp) == 0:
                raise DownloadError(f"Converting {params} for {source.name} wrote nothing")
    return converted


def fetch_params(source, progress=True, home=None):
    """GluonCV's ``.params`` of ``source`` (a :class:`kseg.presets.WeightsSource`), SHA-1 checked.

    The same search and download as :func:`fetch_pretrained`, without the
    conversion: ImageNet backbones for ``--pretrained-backbone`` use it.
    """
    home = Path(os.fspath(home)) if home is not None else kseg_home()
    home.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(home / f".{source.name}.lock", source.name):
        _remove_stale_temporaries(source, home)
        return _local_params(source, home, progress)


def _remove_stale_temporaries(source, home):
    """Temporary files of ``source`` left by a killed process (only the lock holder writes them)."""
    patterns = (
        f".{source.archive}.*.part",
        f".{source.gluoncv_file}.*.part",
        f".{source.name}.weights.h5.*.weights.h5",
    )
    for pattern in patterns:
        for stale in home.glob(pattern):
            with contextlib.suppress(OSError):
                stale.unlink()


def _local_params(source, home, progress):
    """A verified GluonCV ``.params`` of ``source`` in ``home``: found, extracted or downloaded."""
    params = home / source.gluoncv_file
    for candidate in (params, home / f"{source.name}.params"):
        if candidate.is_file():
            actual = sha1_of(candidate)
            if actual != source.sha1:
                raise DownloadError(
                    f"SHA-1 mismatch for {candidate}: expected {source.sha1} (GluonCV's {source.gluoncv_file}), "
                    f"got {actual}. The file is corrupt or for another model: delete it (kseg will then "
                    f"download the right one) or load it anyway by its path (--weights PATH, weights=PATH)."
                )
            return candidate
    archive = home / source.archive
    if archive.is_file():
        _extract_params(archive, source, params, origin=str(archive))
        return params
    url = source.url
    with _download(url, source, home, progress) as downloaded:
        _extract_params(downloaded, source, params, origin=url)
    return params


def _placement_hint(source, url, home):
    return (
        f"Download {url} and place it, or the {source.gluoncv_file} inside it (SHA-1 {source.sha1}), in {home}; "
        f"set ${STORE_URL_ENV} to use a mirror, or name a file you have (--weights PATH on the command line, "
        f"weights=PATH in Python)."
    )


@contextlib.contextmanager
def _download(url, source, home, progress):
    """Stream ``url`` into a dot-named temporary file in ``home``; yield its path, remove it afterwards."""
    fd, tmp = tempfile.mkstemp(dir=home, prefix=f".{source.archive}.", suffix=".part")
    received = 0
    try:
        with os.fdopen(fd, "wb") as out:
            request = urllib.request.Request(url, headers={"User-Agent": "kseg"})
            try:
                with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                    length = response.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else None
                    bar = _progress_bar(url, home, total) if progress else None
                    while chunk := response.read(CHUNK_SIZE):
                        out.write(chunk)
                        received += len(chunk)
                        if bar is not None:
                            bar.update(received)
            except urllib.error.HTTPError as error:
                raise WeightsUnavailableError(
                    f"Could not download pretrained weights for {source.name}: HTTP {error.code} {error.reason} "
                    f"from {url}. {_placement_hint(source, url, home)}"
                ) from error
            except urllib.error.URLError as error:
                raise WeightsUnavailableError(
                    f"Could not download pretrained weights for {source.name} (offline? {error.reason}). "
                    f"{_placement_hint(source, url, home)}"
                ) from error
            except (OSError, http.client.HTTPException) as error:
                raise DownloadError(
                    f"Download of {url} failed after {received} bytes ({type(error).__name__}: {error}); "
                    f"nothing was kept. Try again, or: {_placement_hint(source, url, home)}"
                ) from error
        if total is not None and received < total:
            raise DownloadError(
                f"Truncated download of {url}: got {received} of {total} bytes; nothing was kept. "
                f"Try again, or: {_placement_hint(source, url, home)}"
            )
        yield tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


def _progress_bar(url, home, total):
    from kseg.utils.quiet import progress_bar

    print(f"Downloading {url} to {home}", file=sys.stderr)
    return progress_bar(total, unit_name="B")


def _unsafe_reason(member):
    name = member.filename.replace("\\", "/")
    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        return "has an absolute path"
    if ".." in PurePosixPath(name).parts:
        return "has a '..' component"
    if stat.S_ISLNK(member.external_attr >> 16):
        return "is a symbolic link"
    return None


def _extract_params(archive_path, source, dest, origin):
    """Extract ``source.gluoncv_file`` from the zip at ``archive_path`` to ``dest``, SHA-1 checked, atomically.

    Any member with an absolute path, a ``..`` component or a symlink makes the
    whole archive rejected; only the expected ``.params`` member is extracted.
    """
    try:
        with zipfile.ZipFile(archive_path) as archive:
            members = archive.infolist()
            for member in members:
                reason = _unsafe_reason(member)
                if reason:
                    raise DownloadError(f"Refusing to unpack {origin}: member {member.filename!r} {reason}")
            matches = [m for m in members if not m.is_dir() and m.filename == source.gluoncv_file]
            matches = matches or [
                m for m in members if not m.is_dir() and PurePosixPath(m.filename).name == source.gluoncv_file
            ]
            if len(matches) != 1:
                found = ", ".join(repr(m.filename) for m in members[:10]) or "nothing"
                raise DownloadError(f"{origin} should hold one {source.gluoncv_file}; it holds {found}")
            with atomic_path(dest, suffix=".part") as tmp:
                digest = hashlib.sha1()
                with archive.open(matches[0]) as src, open(tmp, "wb") as out:
                    while block := src.read(CHUNK_SIZE):
                        digest.update(block)
                        out.write(block)
                if digest.hexdigest() != source.sha1:
                    raise DownloadError(
                        f"SHA-1 mismatch for {source.gluoncv_file} from {origin}: expected {source.sha1}, "
                        f"got {digest.hexdigest()}. The file is corrupt or not GluonCV's; nothing was kept."
                    )
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as error:
        raise DownloadError(f"{origin} is not a valid zip archive ({error}); nothing was kept") from error


@contextlib.contextmanager
def _exclusive_lock(path, name):
    """Hold ``flock`` on ``path`` (POSIX); another process fetching the same model waits."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock
        yield
        return
    with open(path, "a+b") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"Waiting for another process fetching {name} (lock {path})", file=sys.stderr)
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
