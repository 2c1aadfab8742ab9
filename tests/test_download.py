"""python -m proxytask.download against a real HTTP server on 127.0.0.1 serving a small archive
the test builds: a fresh fetch, a resume after a truncated partial file (HTTP Range), a server
that ignores ranges, a checksum mismatch, and a hostile archive."""

import hashlib
import http.server
import io
import subprocess
import sys
import threading
import zipfile

import pytest

from proxytask.download import DownloadError, download_tinyimagenet


def _archive(extra: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("tiny-imagenet-200/wnids.txt", "n01\nn02\n")
        zf.writestr("tiny-imagenet-200/words.txt", "n01\tone\nn02\ttwo\n")
        for wnid in ("n01", "n02"):
            zf.writestr(f"tiny-imagenet-200/train/{wnid}/images/{wnid}_0.JPEG", bytes(range(256)) * 40)
        zf.writestr("tiny-imagenet-200/val/val_annotations.txt", "val_0.JPEG\tn01\t0\t0\t1\t1\n")
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buffer.getvalue()


class _Server:
    """A loopback HTTP server for one body; honours ``Range: bytes=N-`` unless ``ranges`` is False.
    ``requests`` records each request's Range header."""

    def __init__(self, body: bytes, ranges: bool = True):
        self.body, self.ranges, self.requests = body, ranges, []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                header = self.headers.get("Range")
                owner.requests.append(header)
                start = int(header.split("=")[1].rstrip("-")) if header and owner.ranges else 0
                if start >= len(owner.body) and header:
                    self.send_response(416)
                    self.end_headers()
                    return
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(owner.body) - start))
                self.end_headers()
                self.wfile.write(owner.body[start:])

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/tiny-imagenet-200.zip"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    servers = []

    def make(body, ranges=True):
        servers.append(_Server(body, ranges))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_fetch_check_and_unpack(tmp_path, server):
    body = _archive()
    srv = server(body)
    target = download_tinyimagenet(tmp_path, url=srv.url, sha256=_sha(body), progress=False)
    assert target == tmp_path / "tiny-imagenet-200"
    assert (target / "wnids.txt").read_text() == "n01\nn02\n"
    assert (target / "train" / "n02" / "images" / "n02_0.JPEG").read_bytes() == bytes(range(256)) * 40
    assert not (tmp_path / "tiny-imagenet-200.zip").exists() and srv.requests == [None]
    assert download_tinyimagenet(tmp_path, url=srv.url, sha256=_sha(body), progress=False) == target
    assert srv.requests == [None]  # already unpacked: nothing fetched again


def test_resume_after_a_truncated_partial_file(tmp_path, server):
    body = _archive()
    srv = server(body)
    cut = len(body) // 3
    (tmp_path / "tiny-imagenet-200.zip.part").write_bytes(body[:cut])  # what a killed fetch leaves
    download_tinyimagenet(tmp_path, url=srv.url, sha256=_sha(body), progress=False, keep_archive=True)
    assert srv.requests == [f"bytes={cut}-"]  # only the rest was asked for
    assert (tmp_path / "tiny-imagenet-200.zip").read_bytes() == body
    assert (tmp_path / "tiny-imagenet-200" / "words.txt").is_file()


def test_a_server_that_ignores_ranges_restarts_the_file(tmp_path, server):
    body = _archive()
    srv = server(body, ranges=False)
    (tmp_path / "tiny-imagenet-200.zip.part").write_bytes(body[:100])
    download_tinyimagenet(tmp_path, url=srv.url, sha256=_sha(body), progress=False, keep_archive=True)
    assert (tmp_path / "tiny-imagenet-200.zip").read_bytes() == body


def test_checksum_mismatch_is_one_line_and_removes_the_file(tmp_path, server):
    body = _archive()
    srv = server(body)
    (tmp_path / "tiny-imagenet-200.zip.part").write_bytes(b"X" * 50)  # a damaged partial file
    with pytest.raises(DownloadError, match=r"^download: tiny-imagenet-200.zip.part .* has SHA-256 [0-9a-f]{64}, "
                                            r"not [0-9a-f]{64}; it was removed: run again"):
        download_tinyimagenet(tmp_path, url=srv.url, sha256=_sha(body), progress=False)
    assert not (tmp_path / "tiny-imagenet-200.zip.part").exists()
    assert download_tinyimagenet(tmp_path, url=srv.url, sha256=_sha(body), progress=False).is_dir()  # afresh
    # through the command: the official digest does not match the test archive
    run = subprocess.run([sys.executable, "-m", "proxytask.download", "tinyimagenet", str(tmp_path / "cli"),
                          "--url", srv.url, "--no-progress"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and len(run.stderr.strip().splitlines()) == 1
    assert "has SHA-256" in run.stderr and "6198c8ae015e" in run.stderr


def test_hostile_archive_and_unreachable_server(tmp_path, server):
    body = _archive({"tiny-imagenet-200/../../escape.txt": b"x"})
    srv = server(body)
    with pytest.raises(DownloadError, match=r"outside tiny-imagenet-200/"):
        download_tinyimagenet(tmp_path, url=srv.url, sha256=_sha(body), progress=False)
    assert not (tmp_path.parent / "escape.txt").exists()
    srv.close()
    with pytest.raises(DownloadError, match=r"^download: cannot reach http://127.0.0.1:\d+/.*pass --url"):
        download_tinyimagenet(tmp_path / "again", url=srv.url, sha256=_sha(body), progress=False, timeout_s=5)
