"""One small object-store interface with two backends that behave the same.

The dataset publisher needs only a handful of operations, and every one of them must be safe when
several processes share the same root or bucket:

* ``create`` is write-once: it never overwrites, so it can commit immutable files.
* ``compare_and_swap`` replaces a file only if it has not changed since it was read, so it can
  move a mutable pointer without losing a concurrent update.
* Where the server keeps object versions (S3 bucket versioning), ``ensure_versioning`` turns it
  on, ``version_of`` names the current version of a key, and ``get_version`` reads a named one:
  a dataset manifest pins the versions of its files, so that what a version reads cannot change
  even if someone overwrites a key behind Quorum's back.

``LocalObjectStore`` keeps keys as files under a directory; ``S3ObjectStore`` keeps them in a
bucket (AWS S3 or MinIO) and relies on S3 conditional writes (``If-None-Match`` / ``If-Match``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from infra.settings import S3Settings, StoreSettings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = [
    "LocalObjectStore",
    "ObjectNotFound",
    "ObjectStore",
    "S3ObjectStore",
    "open_store",
    "s3_client",
]

# Files the local backend keeps for itself (temporary files, lock files) start with this; keys
# may not use it, and listings skip it.
_RESERVED_PREFIX = ".quorum-"


class ObjectNotFound(KeyError):
    """The key does not exist in the store."""


class ObjectStore(ABC):
    """A flat namespace of keys ("a/b/c") holding bytes."""

    @abstractmethod
    def describe(self) -> str:
        """Where the store lives, as a URI (``file:///...`` or ``s3://bucket/prefix``)."""

    @abstractmethod
    def uri(self, key: str) -> str:
        """The full URI of ``key``."""

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The content of ``key``; raises ``ObjectNotFound``."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def create(self, key: str, data: bytes) -> bool:
        """Write ``key`` only if it is absent: True if created, False if it already existed."""

    @abstractmethod
    def get_with_etag(self, key: str) -> tuple[bytes, str]:
        """The content of ``key`` and an opaque etag for ``compare_and_swap``."""

    @abstractmethod
    def compare_and_swap(self, key: str, data: bytes, expected_etag: str | None) -> bool:
        """Write ``key`` if its etag is still ``expected_etag`` (None: only if absent).

        Returns False, writing nothing, when the condition does not hold.
        """

    @abstractmethod
    def list(self, prefix: str) -> Iterator[str]:
        """The keys starting with ``prefix`` (a plain string prefix, as in S3), sorted."""

    # Object versions. The defaults describe a store without them (the local directory).

    def ensure_versioning(self) -> bool:
        """Turn on object versioning where the store supports it; True if it is on."""
        return False

    def version_of(self, key: str) -> str | None:
        """The current version id of ``key`` (None if unversioned); raises ``ObjectNotFound``."""
        if not self.exists(key):
            raise ObjectNotFound(key)
        return None

    def get_version(self, key: str, version_id: str | None) -> bytes:
        """The content of ``key`` as it was at ``version_id`` (None: the current content)."""
        return self.get(key)

    def create_versioned(self, key: str, data: bytes) -> tuple[bool, str | None]:
        """``create``, and the version id it created (None if unversioned or not created)."""
        return self.create(key, data), None


# --------------------------------------------------------------------------------------------
# Local directory
# --------------------------------------------------------------------------------------------


def _check_segments(segments: list[str], what: str, value: str) -> None:
    for segment in segments:
        if segment in ("", ".", ".."):
            raise ValueError(f"invalid {what} {value!r}: empty, '.' or '..' path segment")
        if segment.startswith(_RESERVED_PREFIX):
            raise ValueError(f"invalid {what} {value!r}: {_RESERVED_PREFIX!r} is reserved")
        if "\0" in segment or "\\" in segment:
            raise ValueError(f"invalid {what} {value!r}: NUL or backslash")


def _validate_key(key: str) -> None:
    if not key or key.startswith("/"):
        raise ValueError(f"invalid key {key!r}: empty or absolute")
    _check_segments(key.split("/"), "key", key)


def _validate_prefix(prefix: str) -> None:
    if prefix.startswith("/"):
        raise ValueError(f"invalid prefix {prefix!r}: absolute")
    if prefix:
        # The last segment may be partial ("datasets/ab") or empty ("datasets/").
        segments = prefix.split("/")
        last = segments.pop()
        _check_segments(segments, "prefix", prefix)
        if last in (".", ".."):
            raise ValueError(f"invalid prefix {prefix!r}: '.' or '..' path segment")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class LocalObjectStore(ObjectStore):
    """Keys as files under ``root``; safe for concurrent threads and processes on one host.

    * ``create`` writes a temporary file in the key's directory, fsyncs it, then ``os.link``s it
      to the final name. ``link`` fails with ``FileExistsError`` if the name exists, so exactly
      one writer wins and readers never see a partial file.
    * ``compare_and_swap`` holds an exclusive ``flock`` on a lock file beside the key, checks the
      current content's sha256 (the etag), and ``os.replace``s a fully written temporary file.
      ``flock`` locks belong to the open file description, so they exclude other threads of the
      same process as well as other processes.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalObjectStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        _validate_key(key)
        return self.root.joinpath(*key.split("/"))

    def describe(self) -> str:
        return self.root.absolute().as_uri()

    def uri(self, key: str) -> str:
        return self._path(key).absolute().as_uri()

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectNotFound(key) from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def get_with_etag(self, key: str) -> tuple[bytes, str]:
        data = self.get(key)
        return data, _sha256_hex(data)

    def _write_temp(self, path: Path, data: bytes) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.parent / f"{_RESERVED_PREFIX}tmp-{uuid.uuid4().hex}"
        with open(temp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return temp

    def _link_new(self, path: Path, data: bytes) -> bool:
        temp = self._write_temp(path, data)
        try:
            os.link(temp, path)
        except FileExistsError:
            return False
        finally:
            temp.unlink()
        _fsync_dir(path.parent)
        return True

    def create(self, key: str, data: bytes) -> bool:
        return self._link_new(self._path(key), data)

    def compare_and_swap(self, key: str, data: bytes, expected_etag: str | None) -> bool:
        path = self._path(key)
        if expected_etag is None:
            # Same primitive as create: atomic even against a create() that takes no lock.
            return self._link_new(path, data)
        path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = path.parent / f"{_RESERVED_PREFIX}lock-{path.name}"
        with open(lock_path, "a+b") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                try:
                    current = path.read_bytes()
                except FileNotFoundError:
                    return False
                if _sha256_hex(current) != expected_etag:
                    return False
                temp = self._write_temp(path, data)
                try:
                    os.replace(temp, path)
                except BaseException:
                    with contextlib.suppress(FileNotFoundError):
                        temp.unlink()
                    raise
                _fsync_dir(path.parent)
                return True
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def list(self, prefix: str) -> Iterator[str]:
        _validate_prefix(prefix)
        # Walk only the directory that the prefix names, then filter by the partial last segment.
        directory, _, _ = prefix.rpartition("/")
        base = self.root.joinpath(*directory.split("/")) if directory else self.root
        keys: list[str] = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if not d.startswith(_RESERVED_PREFIX)]
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for name in filenames:
                if name.startswith(_RESERVED_PREFIX):
                    continue
                key = name if rel == "." else f"{rel}/{name}"
                if key.startswith(prefix):
                    keys.append(key)
        yield from sorted(keys)


# --------------------------------------------------------------------------------------------
# S3 (AWS or MinIO)
# --------------------------------------------------------------------------------------------


def _error_code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def _http_status(err: ClientError) -> int:
    return int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _is_not_found(err: ClientError) -> bool:
    return _error_code(err) in ("NoSuchKey", "404", "NotFound") or _http_status(err) == 404


def _is_precondition_failed(err: ClientError) -> bool:
    return _error_code(err) == "PreconditionFailed" or _http_status(err) == 412


def _is_conflict(err: ClientError) -> bool:
    # S3 answers 409 ConditionalRequestConflict when another conditional write to the same key
    # is in flight.
    return _error_code(err) == "ConditionalRequestConflict" or _http_status(err) == 409


def _version_id(value: Any) -> str | None:
    # An unversioned bucket answers "null" (or nothing).
    return None if value in (None, "", "null") else str(value)


class S3ObjectStore(ObjectStore):
    """Keys as objects under ``prefix`` in ``bucket``, using S3 conditional writes."""

    # How often create() retries a 409 (a concurrent conditional write to the same key), and the
    # first pause between tries; the outcome of create() must be a definite True or False.
    conflict_retries = 8
    conflict_backoff = 0.05

    def __init__(
        self, client: S3Client, bucket: str, prefix: str = "", *, versioning: bool = True
    ) -> None:
        prefix = prefix.strip("/")
        self.client = client
        self.bucket = bucket
        self.prefix = f"{prefix}/" if prefix else ""
        # Whether ensure_versioning may turn bucket versioning on (it only ever reads otherwise).
        self.versioning = versioning
        self._versioning_on: bool | None = None

    def __repr__(self) -> str:
        return f"S3ObjectStore(bucket={self.bucket!r}, prefix={self.prefix!r})"

    def _key(self, key: str) -> str:
        if not key or key.startswith("/"):
            raise ValueError(f"invalid key {key!r}: empty or absolute")
        return self.prefix + key

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def get(self, key: str) -> bytes:
        return self.get_with_etag(key)[0]

    def get_with_etag(self, key: str) -> tuple[bytes, str]:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as err:
            if _is_not_found(err):
                raise ObjectNotFound(key) from None
            raise
        with response["Body"] as body:
            data = body.read()
        return data, response["ETag"]

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as err:
            if _is_not_found(err):
                return False
            raise
        return True

    def create(self, key: str, data: bytes) -> bool:
        return self.create_versioned(key, data)[0]

    def create_versioned(self, key: str, data: bytes) -> tuple[bool, str | None]:
        full_key = self._key(key)
        delay = self.conflict_backoff
        for attempt in range(self.conflict_retries + 1):
            try:
                response = self.client.put_object(
                    Bucket=self.bucket, Key=full_key, Body=data, IfNoneMatch="*"
                )
            except ClientError as err:
                if _is_precondition_failed(err):
                    return False, None
                if _is_conflict(err) and attempt < self.conflict_retries:
                    # Another writer is creating it right now: retry to learn who won.
                    time.sleep(delay)
                    delay *= 2
                    continue
                raise
            return True, _version_id(response.get("VersionId"))
        raise AssertionError("unreachable")  # pragma: no cover

    def ensure_versioning(self) -> bool:
        """Turn bucket versioning on if it was never configured (and ``versioning`` allows it).

        A bucket whose versioning an administrator *suspended* is left as it is, and a server
        that does not support versioning (or a key without the permission) is used without it.
        """
        if self._versioning_on is not None:
            return self._versioning_on
        try:
            status: str = self.client.get_bucket_versioning(Bucket=self.bucket).get("Status", "")
        except ClientError:
            self._versioning_on = False
            return False
        if status == "" and self.versioning:
            try:
                self.client.put_bucket_versioning(
                    Bucket=self.bucket, VersioningConfiguration={"Status": "Enabled"}
                )
                status = "Enabled"
            except ClientError:
                pass
        self._versioning_on = status == "Enabled"
        return self._versioning_on

    def version_of(self, key: str) -> str | None:
        try:
            response = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as err:
            if _is_not_found(err):
                raise ObjectNotFound(key) from None
            raise
        return _version_id(response.get("VersionId"))

    def get_version(self, key: str, version_id: str | None) -> bytes:
        if version_id is None:
            return self.get(key)
        try:
            response = self.client.get_object(
                Bucket=self.bucket, Key=self._key(key), VersionId=version_id
            )
        except ClientError as err:
            if _is_not_found(err) or _error_code(err) in ("NoSuchVersion", "InvalidArgument"):
                raise ObjectNotFound(f"{key} (version {version_id})") from None
            raise
        with response["Body"] as body:
            return body.read()

    def compare_and_swap(self, key: str, data: bytes, expected_etag: str | None) -> bool:
        condition: dict[str, Any] = (
            {"IfNoneMatch": "*"} if expected_etag is None else {"IfMatch": expected_etag}
        )
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **condition)
        except ClientError as err:
            if _is_precondition_failed(err) or _is_conflict(err):
                return False
            if expected_etag is not None and _is_not_found(err):
                return False
            raise
        return True

    def list(self, prefix: str) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        strip = len(self.prefix)
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
            for item in page.get("Contents", []):
                yield item["Key"][strip:]


# --------------------------------------------------------------------------------------------
# From settings
# --------------------------------------------------------------------------------------------


def s3_client(s3: S3Settings) -> S3Client:
    """A boto3 S3 client for ``s3`` (path-style addressing, so it works with MinIO)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=s3.endpoint_url,
        region_name=s3.region,
        aws_access_key_id=(
            s3.access_key_id.get_secret_value() if s3.access_key_id is not None else None
        ),
        aws_secret_access_key=(
            s3.secret_access_key.get_secret_value() if s3.secret_access_key is not None else None
        ),
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 5, "mode": "standard"},
        ),
    )


def open_store(store: StoreSettings, s3: S3Settings, home: Path) -> ObjectStore:
    """The dataset store that ``store`` describes."""
    if store.backend == "s3":
        return S3ObjectStore(s3_client(s3), store.bucket, store.prefix)
    return LocalObjectStore(store.resolved_root(home))
