"""A DVC object store seen as its objects: the S3 remote (a bucket's prefix), a folder remote, or a local DVC cache.

DVC 3 lays every store out the same way (its cache, `dvc push`'s remote, `dvc push --run-cache`'s entries):

    files/md5/<2 hex>/<30 hex>        an object: a file's content, named by its md5
    files/md5/<2 hex>/<30 hex>.dir    a directory's listing (JSON: [{"md5": …, "relpath": …}, …]), an object too
    runs/<2 hex>/<64 hex>/<64 hex>    a run-cache entry: one stage's lock (cmd, deps, params, outs), named by the
                                      sha256 of the stage's key and of the entry (lock.run_cache_entry)

Anything else under the root (DVC 2's <2 hex>/<30 hex> objects, the remote probe's .runloop-check/, another
project's folder nested under this prefix) is of no kind this module knows (`OTHER`); deciding what to delete is
the caller's (retention.py), this module only lists, reads and deletes what it is told.

    store(where, env)       the store of the DVC remote `where` (dvc_remote.location): S3 or a folder
    folder(path)            a folder in DVC's layout: a folder remote or a local cache (.dvc/cache)
    Store.items()           every object under the root: key, size, when it was written
    Store.read(key)         one object's bytes, None when it is not there
    Store.holds(keys)       which of these keys are there
    Store.delete(keys)      delete them (S3: 1000 a request)
    object_key(md5), entry_key(key, value), Item.kind, Item.md5, dir_listing(data)

boto3 is imported by the S3 store alone, when one is made.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from src.runloop import dvc_remote, environment
from src.runloop.refusal import Refused

OBJECT, DIR, ENTRY, OTHER = "object", "dir", "entry", "other"
_OBJECT = re.compile(r"files/md5/([0-9a-f]{2})/([0-9a-f]{30})(\.dir)?")
_ENTRY = re.compile(r"runs/([0-9a-f]{2})/([0-9a-f]{64})/([0-9a-f]{64})")
MD5 = re.compile(r"[0-9a-f]{32}(?:\.dir)?")
BATCH = 1000  # S3's DeleteObjects takes at most 1000 keys
READERS = 8  # objects read at once (run-cache entries, directory listings): S3 answers each in milliseconds


class StoreError(Refused):
    """The store could not be listed, read or written; the message says which and what to do."""


@dataclass(frozen=True)
class Item:
    """One object of a store."""

    key: str  # relative to the store's root, with `/`
    size: int
    modified: float  # when it was written, seconds since the epoch

    @property
    def kind(self) -> str:
        if match := _OBJECT.fullmatch(self.key):
            return DIR if match.group(3) else OBJECT
        return ENTRY if _ENTRY.fullmatch(self.key) else OTHER

    @property
    def md5(self) -> str:
        """An object's md5 as dvc.lock writes it (`….dir` for a directory's listing); "" for other kinds."""
        match = _OBJECT.fullmatch(self.key)
        return f"{match.group(1)}{match.group(2)}{match.group(3) or ''}" if match else ""


def object_key(md5: str) -> str:
    """Where DVC 3 keeps the object of this md5 (a `….dir` listing too), relative to the store's root."""
    return f"files/md5/{md5[:2]}/{md5[2:]}"


def entry_key(key: str, value: str) -> str:
    """Where DVC keeps the run-cache entry `value` of the stage whose key is `key`."""
    return f"runs/{key[:2]}/{key}/{value}"


def dir_listing(data: bytes | None) -> list[str] | None:
    """The md5s a directory's listing (a `.dir` object) names; None when it cannot be read as one."""
    try:
        entries = json.loads(data or b"")
        return [e["md5"] for e in entries if MD5.fullmatch(str(e.get("md5", "")))]
    except (ValueError, TypeError, AttributeError, KeyError):
        return None


class Store(Protocol):
    url: str

    def items(self) -> list[Item]: ...

    def read(self, key: str) -> bytes | None: ...

    def holds(self, keys: Iterable[str]) -> set[str]: ...

    def delete(self, keys: list[str]) -> None: ...


def read_many(store: Store, keys: Iterable[str]) -> dict[str, bytes | None]:
    """Several objects' bytes, read a few at a time."""
    wanted = list(dict.fromkeys(keys))
    if not wanted:
        return {}
    with ThreadPoolExecutor(max_workers=READERS) as pool:
        return dict(zip(wanted, pool.map(store.read, wanted), strict=True))


# -- S3 ------------------------------------------------------------------------------------------------------------


class S3Store:
    """The objects under `s3://bucket/prefix/`."""

    def __init__(self, where: dvc_remote.Location, env: Mapping[str, str]) -> None:
        self.url = where.url.rstrip("/")
        self.bucket, self.prefix = dvc_remote.bucket_and_prefix(where.url)
        self._env = env
        self.client = dvc_remote.s3_client(where, env, read_timeout=60)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def items(self) -> list[Item]:
        root = f"{self.prefix}/" if self.prefix else ""
        found = []
        with self._said("list"):
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=root):
                for obj in page.get("Contents", []):
                    found.append(Item(obj["Key"][len(root) :], obj["Size"], obj["LastModified"].timestamp()))
        return found

    def read(self, key: str) -> bytes | None:
        from botocore.exceptions import ClientError

        with self._said("read"):
            try:
                return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                    return None
                raise

    def holds(self, keys: Iterable[str]) -> set[str]:
        from botocore.exceptions import ClientError

        def there(key: str) -> bool:
            try:
                self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                    return False
                raise
            return True

        wanted = list(dict.fromkeys(keys))
        with self._said("read"), ThreadPoolExecutor(max_workers=READERS) as pool:
            return {key for key, found in zip(wanted, pool.map(there, wanted), strict=True) if found}

    def delete(self, keys: list[str]) -> None:
        with self._said("delete from"):
            for start in range(0, len(keys), BATCH):
                batch = [{"Key": self._key(k)} for k in keys[start : start + BATCH]]
                done = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
                if errors := done.get("Errors"):
                    first = errors[0]
                    raise StoreError(
                        f"S3 did not delete {len(errors)} object(s) of {self.url}, e.g. {first.get('Key')} "
                        f"({first.get('Code')}) — check that the credentials may s3:DeleteObject, then run again."
                    )

    @contextlib.contextmanager
    def _said(self, verb: str) -> Iterator[None]:
        """S3's errors as one line: what could not be done where, and what to do (no secret, no traceback)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except (ClientError, BotoCoreError) as exc:
            code = exc.response.get("Error", {}).get("Code", "?") if isinstance(exc, ClientError) else ""
            said = environment.one_line(environment.scrub(str(code) or type(exc).__name__, self._env), 80)
            raise StoreError(
                f"Could not {verb} the DVC remote {self.url} ({said}) — check the endpoint, the credentials "
                "(s3:ListBucket, s3:GetObject, s3:DeleteObject) and the bucket, then run again."
            ) from None


# -- a folder ------------------------------------------------------------------------------------------------------


class FolderStore:
    """The objects under a folder in DVC's layout: a folder remote, or a local DVC cache."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.url = str(self.root)

    def items(self) -> list[Item]:
        found = []
        for folder, _dirs, files in os.walk(self.root):
            for name in files:
                path = Path(folder) / name
                try:
                    stat = path.lstat()
                except FileNotFoundError:  # deleted meanwhile
                    continue
                found.append(Item(path.relative_to(self.root).as_posix(), stat.st_size, stat.st_mtime))
        return found

    def read(self, key: str) -> bytes | None:
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError:
            return None

    def holds(self, keys: Iterable[str]) -> set[str]:
        return {key for key in keys if (self.root / key).is_file()}

    def delete(self, keys: list[str]) -> None:
        for key in keys:
            path = self.root / key
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            for parent in path.parents:  # empty folders go too, as DVC's own gc leaves none
                if parent == self.root or any(parent.iterdir()):
                    break
                with contextlib.suppress(OSError):  # written into meanwhile
                    parent.rmdir()


def folder(path: Path) -> FolderStore:
    return FolderStore(path)


def store(where: dvc_remote.Location, env: Mapping[str, str]) -> Store:
    """The DVC remote's store: an S3 prefix or a local folder; other kinds are refused."""
    if where.url.startswith("s3://"):
        return S3Store(where, env)
    if "://" not in where.url:
        path = Path(where.url)
        return FolderStore(path if path.is_absolute() else environment.ROOT / ".dvc" / path)
    scheme = where.url.split("://", 1)[0]
    raise StoreError(
        f"The DVC remote {where.name} is a {scheme}:// remote; this works on S3 (and folder) remotes only — use "
        "DVC's own tools for it."
    )
