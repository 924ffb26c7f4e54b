"""Where uploaded files are kept until their batch is done: the data folder (the embedded default) or an object store.

A worker on another machine (``voce worker`` processes, the Ray driver of ``VOCE_EXECUTOR=ray``) must read the
upload an API host received.  ``VOCE_UPLOAD_STORE=s3://bucket/prefix`` puts each upload in an S3-compatible object
store (AWS S3, MinIO, SeaweedFS, Ceph; ``VOCE_S3_ENDPOINT_URL`` for anything but AWS; credentials from the usual
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` or the instance's role) through fsspec/s3fs, once it has been
checked and normalised; the batch's ``file_path`` is then the object's URI.  A worker copies it into its own data
folder for the run (the readers need a seekable local file: CSV sniffing, XLSX) and deletes the copy afterwards;
the object goes when the batch is done, erased or purged, exactly as a local upload does.

The object store is reached only when the operator configured one (no outbound call by default).
"""
from __future__ import annotations

import contextlib
import logging
import shutil
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("voce.jobs")


class UploadStoreError(RuntimeError):
    """The object store refused or could not be reached; the message names the setting to check."""


def is_remote(file_path: str) -> bool:
    return "://" in file_path


class UploadStore(Protocol):
    """Keeps uploads where every worker can read them."""

    def put(self, local: Path, key: str) -> str:
        """Store ``local`` (then removed) under ``key``; returns what ``batches.file_path`` records."""
        ...

    def fetch(self, file_path: str, scratch: Path) -> Path:
        """A local, readable copy of ``file_path`` (itself when it is local)."""
        ...

    def release(self, file_path: str, local: Path) -> None:
        """Done reading: remove the local copy ``fetch`` made (never the upload itself)."""
        ...

    def delete(self, file_path: str) -> None:
        """The upload is not needed any more (its batch is done, erased or purged)."""
        ...


class LocalUploads:
    """Uploads stay in the data folder (one machine, or workers that share it)."""

    def put(self, local: Path, key: str) -> str:
        return str(local.resolve())

    def fetch(self, file_path: str, scratch: Path) -> Path:
        if is_remote(file_path):
            raise UploadStoreError(
                f"the upload is in an object store ({file_path.split('://')[0]}://...) but this worker has no "
                "VOCE_UPLOAD_STORE set"
            )
        return Path(file_path)

    def release(self, file_path: str, local: Path) -> None:
        return None

    def delete(self, file_path: str) -> None:
        if is_remote(file_path):  # written by a deployment that had an object store: not ours to reach
            log.warning("upload %s is in an object store this process has no access to; left in place", file_path)
            return
        Path(file_path).unlink(missing_ok=True)


class ObjectUploads:
    """Uploads in an S3-compatible object store (fsspec; s3fs for ``s3://``)."""

    def __init__(self, url: str, endpoint_url: str | None = None, fs: Any = None) -> None:
        if not is_remote(url):
            raise ValueError(f"VOCE_UPLOAD_STORE must be a URL such as s3://bucket/prefix, not {url!r}")
        self.url = url.rstrip("/")
        if fs is None:
            try:
                import fsspec
            except ImportError as exc:  # pragma: no cover - depends on the install
                raise UploadStoreError("VOCE_UPLOAD_STORE needs fsspec and s3fs: pip install 'voce[s3]'") from exc
            protocol = self.url.split("://", 1)[0]
            options: dict[str, Any] = {}
            if protocol == "s3" and endpoint_url:
                options["client_kwargs"] = {"endpoint_url": endpoint_url}
            try:
                fs = fsspec.filesystem(protocol, **options)
            except ImportError as exc:  # pragma: no cover
                raise UploadStoreError(f"VOCE_UPLOAD_STORE={url}: {exc}") from exc
        self.fs = fs

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except FileNotFoundError:
            raise
        except Exception as exc:  # botocore, aiohttp and fsspec errors: say where, not the stack
            raise UploadStoreError(f"the upload store {self.url} (VOCE_UPLOAD_STORE) failed while {what}: "
                                   f"{type(exc).__name__}: {exc}") from exc

    def put(self, local: Path, key: str) -> str:
        target = f"{self.url}/{key}"
        self._call("storing the upload", self.fs.put_file, str(local), target)
        local.unlink(missing_ok=True)
        return target

    def fetch(self, file_path: str, scratch: Path) -> Path:
        if not is_remote(file_path):
            return Path(file_path)  # registered before the object store was configured
        scratch.parent.mkdir(parents=True, exist_ok=True)
        dest = scratch.with_name(f"{scratch.name}-{file_path.rsplit('/', 1)[-1]}")
        part = dest.with_name(dest.name + ".part")
        try:
            self._call("reading the upload", self.fs.get_file, file_path, str(part))
        except FileNotFoundError:
            part.unlink(missing_ok=True)
            raise
        shutil.move(part, dest)
        return dest

    def release(self, file_path: str, local: Path) -> None:
        if is_remote(file_path):
            local.unlink(missing_ok=True)

    def delete(self, file_path: str) -> None:
        if not is_remote(file_path):
            Path(file_path).unlink(missing_ok=True)
            return
        with contextlib.suppress(FileNotFoundError):  # already gone
            self._call("deleting the upload", self.fs.rm_file, file_path)


def upload_store(url: str | None, endpoint_url: str | None = None) -> UploadStore:
    """The store ``VOCE_UPLOAD_STORE`` names (None: the data folder)."""
    return ObjectUploads(url, endpoint_url) if url else LocalUploads()
