"""Inputs from anywhere: checkpoints, direction files and data sets named by URL.

An input in the spec is a plain path (in a pod: a mounted volume), ``file:///path``,
``s3://bucket/key`` (the storage layer's S3 client and credentials) or ``https://...``
with a required ``sha256`` pin (a web server proves nothing about what it serves;
``http://`` is accepted on loopback only, for tests). Web fetches go through
:mod:`landscape_job.inputs.web`, which retries what a retry can heal (exit 1 when that fails)
and names the user's mistakes (exit 2). The spec keeps the URLs as given;
each stage turns them into local paths when it runs (:func:`localize`), so the spec,
its hash and the run's provenance name the source, not a pod's temporary folder.

Remote inputs are fetched once into a cache folder (``$LANDSCAPE_CACHE_DIR``: an
emptyDir in a pod; ``~/.cache/landscape`` locally): written to a temporary file,
checked against the size announced by the server and the pinned sha256, then renamed
into place, so a reader never sees half a file and a wrong file never enters the cache.
An unpinned S3 object is re-checked with one HEAD on reuse (size and ETag), so a
replaced object is fetched again; a pinned one is content-addressed and reused as is.
Archives (``.tar.gz``, ``.tgz``, ``.tar``, ``.zip``, ...) given as a data root are
extracted into the cache once, refusing members that would land outside it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import shutil
import tarfile
import tempfile
import urllib.parse
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from landscape_job.base.cache import cache_dir
from landscape_job.base.errors import StageError, UserError
from landscape_job.storage.location import NO_OPTIONS, StorageLocation, StorageOptions, local_path

if TYPE_CHECKING:
    pass

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar", ".zip")
_BLOCK = 1 << 20


# -- URLs -----------------------------------------------------------------------------------


def is_remote(url: str) -> bool:
    return url.startswith(("s3://", "https://", "http://"))


def is_archive(url: str) -> bool:
    return url.lower().endswith(ARCHIVE_SUFFIXES)


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def check_url(url: str, key: str, sha256: str | None) -> None:
    """The form of a remote URL, checked at parse time: bucket and key present, web inputs pinned."""
    if url.startswith("s3://"):
        bucket, _, name = url[len("s3://"):].partition("/")
        if not bucket or bucket.startswith("/"):
            raise UserError(f"{key}: expected s3://bucket/key, got {url!r}")
        if ".." in name.split("/"):
            raise UserError(f"{key}: '..' is not allowed in {url!r}")
        return
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise UserError(f"{key}: plain http:// is only accepted on loopback; use https:// (got {url!r})")
    if not parts.hostname:
        raise UserError(f"{key}: expected https://host/path, got {url!r}")
    if sha256 is None:
        raise UserError(f"{key}: an https:// input needs a pin; write it as {{url: {url}, sha256: <64 hex digits>}} "
                        "(sha256sum FILE prints it)")


def check_sha256(value: object, key: str) -> str:
    if not isinstance(value, str) or len(value) != 64 or any(c not in "0123456789abcdef" for c in value.lower()):
        raise UserError(f"{key}: expected 64 hexadecimal digits (sha256sum FILE), got {value!r}")
    return value.lower()


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


# -- the fetcher ----------------------------------------------------------------------------


def _entry_name(url: str, sha256: str | None) -> str:
    return hashlib.sha256(f"{url}\0{sha256 or ''}".encode()).hexdigest()[:32]


def _read_meta(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return {}


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


class Fetcher:
    """Turns input URLs into local paths through the cache; one per stage."""

    def __init__(self, cache: Path | None = None, s3_options: StorageOptions = NO_OPTIONS):
        self.cache = cache or cache_dir()
        #: The endpoint, region, ... S3 inputs are read with: the run's storage options, so
        #: inputs in the results' S3 store need no settings of their own (only S3 storage has any).
        self.s3_options = s3_options
        self._s3: dict[str, Any] = {}

    # -- public ----------------------------------------------------------------------------

    def file(self, url: str, key: str, sha256: str | None = None) -> str:
        """A local file holding the input; verified against the pin if there is one."""
        if not is_remote(url):
            path = Path(local_path(url))
            if not path.is_file():
                raise UserError(f"{key}: file not found: {path}")
            if sha256 is not None and file_sha256(path) != sha256:
                raise UserError(f"{key}: {path} does not match its sha256 pin {sha256[:12]}...; "
                                "fix the pin or the file")
            return str(path)
        return str(self._fetch(url, key, sha256))

    def folder(self, url: str, key: str, sha256: str | None = None) -> str:
        """A local folder holding the input: a folder as is, an archive extracted, an S3 prefix mirrored."""
        if is_archive(url):
            return str(self._extract(Path(self.file(url, key, sha256)), key))
        if not is_remote(url):
            path = Path(local_path(url))
            if not path.is_dir():
                raise UserError(f"{key}: folder not found: {path}")
            return str(path)
        if not url.startswith("s3://"):
            raise UserError(f"{key}: a web data root must be an archive ({', '.join(ARCHIVE_SUFFIXES)}); got {url!r}")
        if sha256 is not None:
            raise UserError(f"{key}: a sha256 pin needs one file (an archive), not the S3 prefix {url!r}")
        return str(self._mirror(url, key))

    def list_files(self, url: str, key: str, suffixes: tuple[str, ...]) -> list[str]:
        """The ``s3://`` URLs of the objects under the S3 prefix ``url`` whose names end in ``suffixes``
        (a series' checkpoints), in listing order; one line naming ``key`` when the prefix is empty."""
        storage, bucket, name = self._s3_target(url, key)
        prefix = name.rstrip("/") + "/" if name.strip("/") else ""
        found = [f"s3://{bucket}/{item['key']}" for item in self._list(storage, bucket, prefix, key, url)
                 if item["key"].lower().endswith(suffixes)]
        if not found:
            raise UserError(f"{key}: no checkpoint ({', '.join(suffixes)}) under {url}; upload them or fix the URL")
        return found

    def check(self, url: str, key: str, folder: bool = False, sized: bool = False) -> int | None:
        """Reachability without a download (one HEAD or list): for checks before a cluster submit.

        Returns the bytes the input takes in the cache where that is known (None for a local
        path or a server that does not say); ``sized``: an S3 prefix is listed whole for it."""
        if not is_remote(url):
            return None
        if url.startswith("s3://"):
            client, bucket, name = self._s3_target(url, key)
            if folder and not is_archive(url):
                items = self._list(client, bucket, name.rstrip("/") + "/", key, url, limit=None if sized else 1)
                if not items:
                    raise UserError(f"{key}: no objects under {url}; upload the data set there or fix the URL")
                return sum(item["size"] for item in items) if sized else None
            return self._head(client, bucket, name, key, url)["size"]
        from landscape_job.inputs import web  # its retry loop only for https inputs (not at parse time)

        return web.head(url, key)

    # -- S3 ---------------------------------------------------------------------------------

    def _s3_target(self, url: str, key: str) -> tuple[Any, str, str]:
        from landscape_job.storage.s3 import S3Storage  # boto3 only for those who use S3

        bucket, _, name = url[len("s3://"):].partition("/")
        if bucket not in self._s3:
            self._s3[bucket] = S3Storage(StorageLocation.parse(f"s3://{bucket}", self.s3_options))
        return self._s3[bucket], bucket, name

    def _s3_error(self, err: Exception, key: str, url: str) -> UserError:
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(err, ClientError):
            code = str(err.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                return UserError(f"{key}: {url} does not exist; upload it or fix the URL")
            if code == "NoSuchBucket":
                return UserError(f"{key}: the bucket of {url} does not exist; fix the URL")
            if code in ("AccessDenied", "403"):
                return UserError(f"{key}: access to {url} denied; the credentials need s3:GetObject "
                                 "(and s3:ListBucket) there")
            return UserError(f"{key}: cannot read {url} ({code or 'error'})")
        if isinstance(err, BotoCoreError):
            return UserError(f"{key}: cannot read {url} ({type(err).__name__}); check the endpoint "
                             "(storage.endpoint_url or AWS_ENDPOINT_URL) and the credentials")
        raise err

    def _head(self, storage: Any, bucket: str, name: str, key: str, url: str) -> dict[str, Any]:
        try:
            head = storage.retried(f"head {url}", lambda _: _complete(storage.client.head_object(Bucket=bucket, Key=name)))
        except Exception as err:  # noqa: BLE001 - mapped to a user's message or re-raised
            raise self._s3_error(err, key, url) from None
        return {"size": int(head["ContentLength"]), "etag": head.get("ETag", "")}

    def _list(self, storage: Any, bucket: str, prefix: str, key: str, url: str,
              limit: int | None = None) -> list[dict[str, Any]]:
        def attempt(_: int) -> list[dict[str, Any]]:
            items: list[dict[str, Any]] = []
            paginator = storage.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                for item in page.get("Contents", ()):
                    if not item["Key"].endswith("/"):
                        items.append({"key": item["Key"], "size": int(item["Size"]), "etag": item.get("ETag", "")})
                        if limit is not None and len(items) >= limit:
                            return items
            return items

        try:  # transient faults retried by the storage's policy; a spent budget is a StageError
            return storage.retried(f"list {url}", attempt)
        except Exception as err:  # noqa: BLE001
            raise self._s3_error(err, key, url) from None

    def _download_s3(self, storage: Any, bucket: str, name: str, dest: Path, key: str, url: str) -> None:
        try:
            storage.retried(f"download {url}", lambda _: _download_file(storage, bucket, name, dest))
        except Exception as err:  # noqa: BLE001
            raise self._s3_error(err, key, url) from None

    # -- cache ------------------------------------------------------------------------------

    def _fetch(self, url: str, key: str, sha256: str | None) -> Path:
        """The input's file in the cache, fetched if absent or (unpinned S3) changed."""
        entry = self.cache / "files" / _entry_name(url, sha256)
        target = entry / (Path(urllib.parse.urlsplit(url).path).name or "input")
        meta = _read_meta(entry)
        s3 = self._s3_target(url, key) if url.startswith("s3://") else None
        remote: dict[str, Any] | None = None
        if target.is_file() and meta.get("size") == target.stat().st_size:
            if sha256 is not None and meta.get("sha256") == sha256:
                return target  # content-addressed: the pin says what the bytes are
            if s3 is not None:
                remote = self._head(*s3, key, url)
                if remote["etag"] == meta.get("etag") and remote["size"] == meta["size"]:
                    return target
        entry.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=entry)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            if s3 is not None:
                remote = remote or self._head(*s3, key, url)
                self._download_s3(*s3, tmp, key, url)
                expected = remote["size"]
            else:
                from landscape_job.inputs import web

                expected = web.download(url, tmp, key)  # retried; a body cut short is retried too
            size = tmp.stat().st_size
            if expected is not None and size != expected:
                raise StageError(f"{key}: {url} arrived with {size} bytes of {expected}; try again")
            digest = file_sha256(tmp)
            if sha256 is not None and digest != sha256:
                raise UserError(f"{key}: {url} does not match its sha256 pin (got {digest[:12]}..., pinned "
                                f"{sha256[:12]}...); fix the pin or the object")
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        _write_atomically(entry / "meta.json", json.dumps(
            {"url": url, "size": size, "sha256": digest, "etag": (remote or {}).get("etag", "")}))
        return target

    def _mirror(self, url: str, key: str) -> Path:
        """Every object under an S3 prefix, as a folder in the cache (refreshed if the listing changed)."""
        storage, bucket, name = self._s3_target(url, key)
        prefix = name.rstrip("/") + "/" if name.strip("/") else ""
        listing = self._list(storage, bucket, prefix, key, url)
        if not listing:
            raise UserError(f"{key}: no objects under {url}; upload the data set there or fix the URL")
        entry = self.cache / "prefixes" / _entry_name(url, None)
        fingerprint = hashlib.sha256(json.dumps(listing, sort_keys=True).encode()).hexdigest()
        tree = entry / fingerprint[:24]
        if (tree / ".complete").is_file():
            return tree
        entry.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".mirror-", dir=entry))
        try:
            for item in listing:
                relative = item["key"][len(prefix):]
                if not relative or ".." in relative.split("/") or relative.startswith("/"):
                    continue
                dest = staging / relative
                dest.parent.mkdir(parents=True, exist_ok=True)
                self._download_s3(storage, bucket, item["key"], dest, key, f"s3://{bucket}/{item['key']}")
                if dest.stat().st_size != item["size"]:
                    raise UserError(f"{key}: s3://{bucket}/{item['key']} arrived incomplete; try again")
            (staging / ".complete").write_text(fingerprint + "\n")
            _install_folder(staging, tree)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return tree

    def _extract(self, archive: Path, key: str) -> Path:
        """The archive's members in a cache folder keyed by the archive's content."""
        digest = file_sha256(archive)
        tree = self.cache / "extracted" / digest[:32]
        if (tree / ".complete").is_file():
            return tree
        tree.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=tree.parent))
        try:
            _unpack(archive, staging, key)
            (staging / ".complete").write_text(digest + "\n")
            _install_folder(staging, tree)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return tree


def _download_file(storage: Any, bucket: str, name: str, dest: Path) -> None:
    """One attempt at an S3 object to ``dest`` (s3transfer: parallel ranged GETs, each part retried)."""
    from landscape_job.storage.retry import Corrupt

    try:
        storage.transfer_client.download_file(bucket, name, str(dest), Config=storage.transfer)
    except KeyError as err:  # s3transfer's own HEAD came back without the size it needs
        raise Corrupt(f"a HEAD answer without {err}") from None


def _complete(head: dict[str, Any]) -> dict[str, Any]:
    """A HEAD answer that says the object's size; one cut short is retried like any passing fault."""
    from landscape_job.storage.retry import Corrupt

    if "ContentLength" not in head:
        raise Corrupt("a HEAD answer without Content-Length")
    return head


def _install_folder(staging: Path, tree: Path) -> None:
    """Moves a finished folder into place; if a concurrent process was first, its copy stays."""
    try:
        os.rename(staging, tree)
    except OSError:
        if not (tree / ".complete").is_file():
            shutil.rmtree(tree, ignore_errors=True)
            os.rename(staging, tree)


def _unpack(archive: Path, dest: Path, key: str) -> None:
    """Extracts safely: no absolute paths, no ``..``, no links or devices (tarfile's ``data`` filter)."""
    name = archive.name.lower()
    try:
        if name.endswith(".zip"):
            with zipfile.ZipFile(archive) as handle:
                for member in handle.namelist():
                    if member.startswith("/") or ".." in member.replace("\\", "/").split("/"):
                        raise UserError(f"{key}: {archive.name} holds an unsafe path {member!r}; refusing it")
                handle.extractall(dest)
        else:
            with tarfile.open(archive) as handle:
                handle.extractall(dest, filter="data")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as err:
        raise UserError(f"{key}: cannot extract {archive.name} ({type(err).__name__}: {err}); "
                        "it must be a tar or zip archive") from None
