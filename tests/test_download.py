"""Downloads against a real HTTP server on 127.0.0.1 serving a tar.gz of a tiny twin.

The server (a thread, port chosen by the OS) honours ``Range: bytes=N-`` and can be told to
cut the connection half-way through its first response, or to ignore ranges, so resuming and
restarting are exercised over real sockets.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from fmtlbench.cli import main
from fmtlbench.download import DownloadError, extract, fetch, install


@dataclass
class Behaviour:
    """What the test server does; ``requests`` logs (path, Range header) of every GET."""

    files: dict[str, bytes] = field(default_factory=dict)
    cut_first: bool = False
    ranges: bool = True
    requests: list[tuple[str, str | None]] = field(default_factory=list)


def _handler(behaviour: Behaviour) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            behaviour.requests.append((self.path, self.headers.get("Range")))
            body = behaviour.files.get(self.path)
            if body is None:
                self.send_error(404, "no such file")
                return
            start = 0
            wanted = self.headers.get("Range")
            if wanted and behaviour.ranges:
                start = int(wanted.removeprefix("bytes=").split("-")[0])
                if start >= len(body):
                    self.send_error(416, "range not satisfiable")
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            if behaviour.cut_first and len(behaviour.requests) == 1:
                self.wfile.write(body[start : start + (len(body) - start) // 2])
                self.close_connection = True  # hang up with the body half sent
                return
            self.wfile.write(body[start:])

    return Handler


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A tar.gz of a tiny PASCAL twin inside ``PASCAL_MT/``, as the real archive is laid out."""
    from fmtlbench_builtins.datasets.pascal import PascalContext

    tmp = tmp_path_factory.mktemp("archive")
    params = PascalContext.Params(twin_train=2, twin_test=1, twin_height=32, twin_width=40)
    PascalContext.synthesize(tmp / "PASCAL_MT", params)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(tmp / "PASCAL_MT", arcname="PASCAL_MT")
    return buffer.getvalue()


@pytest.fixture
def server(archive: bytes) -> Iterator[tuple[str, Behaviour]]:
    behaviour = Behaviour(files={"/PASCAL_MT.tgz": archive})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(behaviour))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", behaviour
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_download_is_verified_against_its_checksum(server, archive, tmp_path: Path) -> None:
    base, behaviour = server
    good = hashlib.sha256(archive).hexdigest()
    digest = fetch(f"{base}/PASCAL_MT.tgz", tmp_path / "a.tgz", good.upper())
    assert digest == good and (tmp_path / "a.tgz").read_bytes() == archive
    assert behaviour.requests == [("/PASCAL_MT.tgz", None)]
    assert not (tmp_path / "a.tgz.part").exists()


def test_a_wrong_checksum_is_refused_and_nothing_is_kept(server, tmp_path: Path) -> None:
    base, _ = server
    with pytest.raises(DownloadError, match="checksum mismatch.*expected SHA-256 0{64}"):
        fetch(f"{base}/PASCAL_MT.tgz", tmp_path / "a.tgz", "0" * 64)
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_download_resumes_with_a_range_request(server, archive, tmp_path) -> None:
    base, behaviour = server
    behaviour.cut_first = True
    good = hashlib.sha256(archive).hexdigest()
    assert fetch(f"{base}/PASCAL_MT.tgz", tmp_path / "a.tgz", good, backoff=0) == good
    half = len(archive) // 2
    assert behaviour.requests == [("/PASCAL_MT.tgz", None), ("/PASCAL_MT.tgz", f"bytes={half}-")]
    assert (tmp_path / "a.tgz").read_bytes() == archive


def test_a_partial_file_from_an_earlier_run_is_continued(server, archive, tmp_path) -> None:
    base, behaviour = server
    (tmp_path / "a.tgz.part").write_bytes(archive[:1000])
    fetch(f"{base}/PASCAL_MT.tgz", tmp_path / "a.tgz", hashlib.sha256(archive).hexdigest())
    assert behaviour.requests == [("/PASCAL_MT.tgz", "bytes=1000-")]
    assert (tmp_path / "a.tgz").read_bytes() == archive


def test_a_server_without_ranges_restarts_from_zero(server, archive, tmp_path) -> None:
    base, behaviour = server
    behaviour.ranges = False
    (tmp_path / "a.tgz.part").write_bytes(b"stale bytes of something else")
    fetch(f"{base}/PASCAL_MT.tgz", tmp_path / "a.tgz", hashlib.sha256(archive).hexdigest())
    assert (tmp_path / "a.tgz").read_bytes() == archive


def test_http_errors_name_the_url(server, tmp_path: Path) -> None:
    base, _ = server
    with pytest.raises(DownloadError, match=r"HTTP 404 .*/missing.tgz"):
        fetch(f"{base}/missing.tgz", tmp_path / "m.tgz")


def test_install_puts_the_archive_folder_in_place(server, archive, tmp_path: Path) -> None:
    from fmtlbench_builtins.datasets.pascal import PascalContext

    base, _ = server
    good = hashlib.sha256(archive).hexdigest()
    folder, digest = install(f"{base}/PASCAL_MT.tgz", tmp_path, "PASCALContext", good)
    assert folder == tmp_path / "PASCALContext" and digest == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["PASCALContext"]  # archive removed
    data = PascalContext(None, folder, synthetic=False)
    assert len(data.ids("train")) == 2
    data.read(data.ids("test")[0], list(PascalContext.tasks))
    with pytest.raises(DownloadError, match="already exists"):
        install(f"{base}/PASCAL_MT.tgz", tmp_path, "PASCALContext", good)


def _tar_with(name: str, path: Path) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    return path


def test_unsafe_archives_are_refused(tmp_path: Path) -> None:
    into = tmp_path / "sub" / "into"
    for name in ("../escape.txt", "/abs.txt", "a/../../escape.txt"):
        with pytest.raises(DownloadError, match="unsafe"):
            extract(_tar_with(name, tmp_path / "bad.tgz"), into)
    with zipfile.ZipFile(tmp_path / "bad.zip", "w") as zipped:
        zipped.writestr("../escape.txt", "evil")
    with pytest.raises(DownloadError, match="unsafe"):
        extract(tmp_path / "bad.zip", into)
    link = tmp_path / "link.tgz"
    with tarfile.open(link, "w:gz") as tar:
        info = tarfile.TarInfo("inside")
        info.type, info.linkname = tarfile.SYMTYPE, "../../outside"
        tar.addfile(info)
    with pytest.raises(DownloadError, match="unsafe"):
        extract(link, into)
    assert not list(tmp_path.rglob("escape.txt")) and not (tmp_path / "abs.txt").exists()
    (tmp_path / "plain.bin").write_bytes(b"neither tar nor zip")
    with pytest.raises(DownloadError, match="neither a tar nor a zip"):
        extract(tmp_path / "plain.bin", into)


def test_download_command(server, archive, tmp_path: Path) -> None:
    base, behaviour = server
    behaviour.cut_first = True
    url, good = f"{base}/PASCAL_MT.tgz", hashlib.sha256(archive).hexdigest()
    runner = CliRunner()
    args = ["data", "download", "pascal-context", "--url", url]
    done = runner.invoke(main, [*args, "--to", str(tmp_path / "a"), "--sha256", good])
    assert done.exit_code == 0, done.output
    assert f"checksum OK (SHA-256 {good})" in done.output
    assert behaviour.requests[1][1] == f"bytes={len(archive) // 2}-"  # resumed
    assert (tmp_path / "a" / "PASCALContext" / "ImageSets" / "Context" / "train.txt").is_file()
    refused = runner.invoke(main, [*args, "--to", str(tmp_path / "b"), "--sha256", "f" * 64])
    assert refused.exit_code == 2 and "checksum mismatch" in refused.output
    assert list((tmp_path / "b").iterdir()) == []
