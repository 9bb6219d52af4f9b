"""Downloading a dataset archive: resumable, checksum-verified, safely extracted.

Dataset archives are gigabytes served by university web servers, so a download is written to
``<archive>.part`` and continued with an HTTP ``Range`` request after an interruption (in this
process, or in a later one). Only a complete file whose SHA-256 matches becomes the archive;
a mismatch deletes the download, so nothing broken stays in place. Extraction refuses members
that would land outside the target folder (absolute paths, ``..``, links pointing out, device
files), then moves the dataset folder into place under the name fmtlbench expects.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from fmtlbench.errors import DataError

#: Bytes read per chunk: large enough for speed, small enough for smooth progress.
CHUNK = 1 << 16
Progress = Callable[[int, int | None], None]


class DownloadError(DataError):
    """A download failed, was refused (checksum) or its archive is unsafe or unreadable."""


#: URL schemes urllib can fetch; anything else fails the same way on every retry.
SCHEMES = ("http", "https", "file")


def check_request(url: str, sha256: str | None, to: Path | None = None) -> None:
    """Refuse, before any byte is fetched, what can only fail later: an unknown URL scheme,
    a ``--sha256`` that is not 64 hex digits, a ``--to`` that exists and is not a folder."""
    scheme = urlparse(url).scheme.lower()
    if scheme not in SCHEMES:
        raise DownloadError(
            f"--url {url}: unsupported scheme {scheme or '(none)'!r}; use {', '.join(SCHEMES)}"
        )
    if sha256 is not None and not (
        len(sha256) == 64 and all(c in "0123456789abcdef" for c in sha256.lower())
    ):
        raise DownloadError(f"--sha256 {sha256!r}: expected 64 hexadecimal digits")
    if to is not None and to.exists() and not to.is_dir():
        raise DownloadError(f"--to {to} exists and is not a folder; give a folder path")


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks so that large archives and checkpoints do not
    fill memory (recorded for weight files, checked for downloads)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _request(url: str, offset: int, timeout: float) -> http.client.HTTPResponse:
    headers = {"User-Agent": "fmtlbench", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _range_start(response: http.client.HTTPResponse) -> int | None:
    """First byte of a partial response, from ``Content-Range: bytes START-END/TOTAL``."""
    value = response.headers.get("Content-Range", "")
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _attempt(url: str, part: Path, timeout: float, progress: Progress | None) -> bool:
    """Continue ``part`` from its current size; True once the server has sent everything."""
    offset = part.stat().st_size if part.exists() else 0
    try:
        response = _request(url, offset, timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left to send: the file is complete
            return True
        raise DownloadError(f"HTTP {exc.code} ({exc.reason}) from {url}") from None
    with response:
        status = getattr(response, "status", None) or 200
        if status == 206 and _range_start(response) != offset:
            part.unlink()  # a range we did not ask for: start again from zero next time
            return False
        if status != 206:  # the server sent the whole file (no range support): start over
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        received = offset
        with open(part, "r+b" if offset else "wb") as out:
            out.seek(offset)
            out.truncate()
            while block := response.read(CHUNK):
                out.write(block)
                received += len(block)
                if progress is not None:
                    progress(received, total)
    # A connection closed early reads as a short body, not as an error: compare lengths.
    return total is None or received >= total


def fetch(
    url: str,
    dest: Path,
    sha256: str | None = None,
    *,
    retries: int = 5,
    timeout: float = 60.0,
    backoff: float = 0.5,
    progress: Progress | None = None,
) -> str:
    """Download ``url`` to ``dest`` (resuming ``dest.part``) and return its SHA-256.

    With ``sha256`` given, a mismatch deletes the download and raises ``DownloadError``.
    An existing ``dest`` is reused when it matches (or when there is nothing to check).
    Interrupted transfers are retried ``retries`` times, waiting ``backoff`` seconds times
    the number of failures so far.
    """
    dest = Path(dest)
    check_request(url, sha256)
    expected = sha256.lower() if sha256 else None
    if dest.is_file():
        # with nothing to check it against, a leftover archive may be a broken one: fetch again
        digest = sha256_of(dest) if expected else None
        if digest is not None and digest == expected:
            return digest
        dest.unlink()
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    while True:
        try:
            if _attempt(url, part, timeout, progress):
                break
            failures.append("connection closed before the end of the file")
        except DownloadError:
            raise
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            failures.append(str(getattr(exc, "reason", exc)) or type(exc).__name__)
        if len(failures) > retries:
            kept = part.stat().st_size if part.exists() else 0
            raise DownloadError(
                f"download of {url} failed {len(failures)} times (last: {failures[-1]}); "
                f"{kept} bytes are kept in {part}: run the command again to resume"
            )
        time.sleep(min(backoff * len(failures), 10.0))
    digest = sha256_of(part)
    if expected is not None and digest != expected:
        part.unlink()
        raise DownloadError(
            f"checksum mismatch for {url}: expected SHA-256 {expected}, got {digest}; the "
            "download was deleted. Check the URL and the --sha256 value"
        )
    os.replace(part, dest)
    return digest


# --------------------------------------------------------------------------- extraction
def _safe_name(name: str, archive: Path) -> None:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise DownloadError(f"{archive} holds an unsafe member path {name!r}; refusing to extract")


def extract(archive: Path, into: Path) -> None:
    """Unpack a tar (any compression) or zip archive into folder ``into``, safely."""
    into.mkdir(parents=True, exist_ok=True)
    if tarfile.is_tarfile(archive):
        try:
            with tarfile.open(archive) as tar:
                for member in tar.getmembers():
                    _safe_name(member.name, archive)
                # The "data" filter also rejects links leaving the folder and device files.
                tar.extractall(into, filter="data")
        except tarfile.FilterError as exc:
            raise DownloadError(f"{archive}: unsafe member refused ({exc})") from None
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise DownloadError(f"cannot extract {archive}: {exc}") from None
    elif zipfile.is_zipfile(archive):
        try:
            with zipfile.ZipFile(archive) as zipped:
                for name in zipped.namelist():
                    _safe_name(name, archive)
                zipped.extractall(into)
        except (zipfile.BadZipFile, OSError) as exc:
            raise DownloadError(f"cannot extract {archive}: {exc}") from None
    else:
        raise DownloadError(f"{archive} is neither a tar nor a zip archive")


def _dataset_folder(staging: Path, folder: str) -> Path:
    """Where the extracted layout is: ``<folder>/``, else the archive's single top folder
    (e.g. ``PASCAL_MT/``), else the archive's top level itself."""
    if (staging / folder).is_dir():
        return staging / folder
    entries = [p for p in staging.iterdir() if p.name not in {"__MACOSX"}]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return staging


def archive_name(url: str, folder: str) -> str:
    name = Path(urlparse(url).path).name
    return name or f"{folder}.archive"


def install(
    url: str,
    to: Path,
    folder: str,
    sha256: str | None = None,
    *,
    keep_archive: bool = False,
    progress: Progress | None = None,
) -> tuple[Path, str]:
    """Download and extract a dataset archive to ``to/folder``; returns (folder, SHA-256)."""
    to = Path(to)
    check_request(url, sha256, to)
    target = to / folder
    if target.exists():
        raise DownloadError(f"{target} already exists; remove it or choose another --to folder")
    to.mkdir(parents=True, exist_ok=True)
    archive = to / archive_name(url, folder)
    digest = fetch(url, archive, sha256, progress=progress)
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=to))
    try:
        extract(archive, staging)
        os.replace(_dataset_folder(staging, folder), target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not keep_archive:
        archive.unlink()
    return target, digest
