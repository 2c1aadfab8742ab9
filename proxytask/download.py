"""Fetch a data set, explicitly: ``python -m proxytask.download tinyimagenet DIR``.

Nothing in the project downloads implicitly; this command is the one way, and only when asked.
It fetches Tiny-ImageNet-200 from its official address (:data:`TINYIMAGENET_URL`, the CS231n
archive) into ``DIR/tiny-imagenet-200.zip``, resuming a partial file with an HTTP Range request,
showing a progress bar; checks its SHA-256 (:data:`TINYIMAGENET_SHA256`; the archive is
248,100,043 bytes, MD5 90528d7ca1a48142e341f4ef8d21d0de); then unpacks it into
``DIR/tiny-imagenet-200`` (every member checked to stay inside ``DIR``, the total size bounded)
and removes the archive unless ``--keep-archive``. Point the signal at the result with
``--data tinyimagenet:DIR/tiny-imagenet-200``.

``--url`` fetches from a mirror instead (the digest is still checked); ``--sha256`` replaces the
expected digest (for a mirror that repacked the archive). A wrong digest removes the file and
says so in one line; run again to fetch it afresh.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import zipfile
from pathlib import Path

TINYIMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
# The official archive's SHA-256, as recorded independently by several projects that pin it
# (and the Hugging Face LFS copy cnak47/cv-datasets: same digest, 248,100,043 bytes).
TINYIMAGENET_SHA256 = "6198c8ae015e2b3e007c7841da39ec069199b9aa3bfa943a462022fe5e43c821"
TINYIMAGENET_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
MAX_UNPACKED_BYTES = 4 << 30  # the archive unpacks to about 480 MB
CHUNK = 1 << 20
DATASETS = ("tinyimagenet",)


class DownloadError(RuntimeError):
    """A download or unpack that failed; the message is one line naming what and the fix."""


def download_tinyimagenet(folder: str | Path, *, url: str = TINYIMAGENET_URL, sha256: str = TINYIMAGENET_SHA256,
                          progress: bool = True, keep_archive: bool = False, timeout_s: float = 60.0) -> Path:
    """Fetch, check and unpack Tiny-ImageNet-200 into ``folder``; returns ``folder/tiny-imagenet-200``.

    Already unpacked (``wnids.txt`` present): returns at once. A partial ``.part`` file is
    resumed. Raises :class:`DownloadError` (one line) on a network error, a digest mismatch or a
    bad archive."""
    folder = Path(folder).expanduser()
    target = folder / "tiny-imagenet-200"
    if (target / "wnids.txt").is_file():
        return target
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DownloadError(f"download: cannot create {folder} ({err.strerror}); choose a writable folder") from None
    archive = folder / "tiny-imagenet-200.zip"
    if not archive.is_file():
        partial = folder / "tiny-imagenet-200.zip.part"
        fetch(url, partial, progress=progress, timeout_s=timeout_s)
        check_sha256(partial, sha256)
        os.replace(partial, archive)
    else:
        check_sha256(archive, sha256)
    unpack(archive, folder, "tiny-imagenet-200")
    if not keep_archive:
        archive.unlink()
    return target


def fetch(url: str, path: Path, *, progress: bool = True, timeout_s: float = 60.0) -> None:
    """Download ``url`` to ``path``, resuming from the bytes ``path`` already holds (HTTP Range);
    a server that ignores the range restarts the file from the beginning."""
    import urllib.error
    import urllib.request

    from tqdm import tqdm

    have = path.stat().st_size if path.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # the range starts at the end: the file is whole
            return
        raise DownloadError(f"download: {url} answered HTTP {err.code} ({err.reason}); try again later or pass "
                            f"--url with a mirror") from None
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise DownloadError(f"download: cannot reach {url} ({reason}); check the network or pass --url with a "
                            f"mirror") from None
    with response:
        resumed = have and response.status == 206
        length = response.headers.get("Content-Length")
        total = (int(length) + (have if resumed else 0)) if length and length.isdigit() else None
        bar = tqdm(total=total, initial=have if resumed else 0, unit="B", unit_scale=True, unit_divisor=1024,
                   desc=path.name.removesuffix(".part"), disable=not progress, file=sys.stderr, mininterval=1.0)
        try:
            with open(path, "ab" if resumed else "wb") as f:
                while True:
                    try:
                        chunk = response.read(CHUNK)
                    except (OSError, ValueError) as err:
                        raise DownloadError(f"download: the transfer from {url} broke ({err}); run the command "
                                            f"again to resume it") from None
                    if not chunk:
                        break
                    f.write(chunk)
                    bar.update(len(chunk))
        finally:
            bar.close()
    if total is not None and path.stat().st_size < total:
        raise DownloadError(f"download: {url} ended after {path.stat().st_size:,} of {total:,} bytes; run the "
                            f"command again to resume it")


def check_sha256(path: Path, expected: str) -> None:
    """Raise :class:`DownloadError` (and remove ``path``) unless its SHA-256 is ``expected``."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    if digest.hexdigest() != expected.lower():
        size = path.stat().st_size
        path.unlink()
        raise DownloadError(f"download: {path.name} ({size:,} bytes) has SHA-256 {digest.hexdigest()}, not "
                            f"{expected.lower()}; it was removed: run again to fetch it afresh (or pass --url with "
                            f"another mirror)")


def unpack(archive: Path, folder: Path, top: str) -> None:
    """Unpack ``archive`` (whose members lie under ``top/``) into ``folder``, through a temporary
    folder renamed into place, refusing members that escape it and archives over
    :data:`MAX_UNPACKED_BYTES`."""
    scratch = folder / f".{top}.unpacking"
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            if sum(m.file_size for m in members) > MAX_UNPACKED_BYTES:
                raise DownloadError(f"download: {archive} would unpack to over {MAX_UNPACKED_BYTES >> 30} GiB; it is "
                                    f"not the data set's archive: delete it and fetch again")
            for member in members:
                name = Path(member.filename)
                if name.is_absolute() or ".." in name.parts or (name.parts and name.parts[0] != top):
                    raise DownloadError(f"download: {archive} holds {member.filename[:80]!r}, outside {top}/; it is "
                                        f"not the data set's archive: delete it and fetch again")
            zf.extractall(scratch)
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        shutil.rmtree(scratch, ignore_errors=True)
        raise DownloadError(f"download: {archive} cannot be unpacked ({str(err)[:100]}); delete it and fetch "
                            f"again") from None
    except DownloadError:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    shutil.rmtree(folder / top, ignore_errors=True)
    os.replace(scratch / top, folder / top)
    shutil.rmtree(scratch, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m proxytask.download",
        description="Fetch a data set explicitly (the project never downloads on its own).")
    parser.add_argument("dataset", choices=DATASETS, help="tinyimagenet: Tiny-ImageNet-200 (CS231n), 237 MiB")
    parser.add_argument("folder", help="where to put it (it lands in FOLDER/tiny-imagenet-200); outside the checkout")
    parser.add_argument("--url", default=TINYIMAGENET_URL, help=f"a mirror (default {TINYIMAGENET_URL})")
    parser.add_argument("--sha256", default=TINYIMAGENET_SHA256, help="expected SHA-256 (default: the official "
                        "archive's)")
    parser.add_argument("--keep-archive", action="store_true", help="keep the .zip after unpacking")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    a = parser.parse_args(argv)
    if len(a.sha256) != 64 or any(ch not in "0123456789abcdefABCDEF" for ch in a.sha256):
        parser.error(f"--sha256: {a.sha256[:80]!r} is not 64 hexadecimal digits")
    try:
        target = download_tinyimagenet(a.folder, url=a.url, sha256=a.sha256, progress=not a.no_progress,
                                       keep_archive=a.keep_archive)
    except DownloadError as err:
        print(err, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("download: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    print(f"Tiny-ImageNet-200 is in {target}; use --data tinyimagenet:{target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
