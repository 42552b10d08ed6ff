"""The DVC remote: whether one is configured, its machine-specific settings (never a credential), and a probe.

The probe asks the S3 service directly (boto3, a few seconds' timeout) instead of a `dvc` command: it runs
before every `invoke repro` that uses the remote, and each `python -m dvc` costs a second.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from src.runloop import environment

NAME = "storage"  # the default remote named in .dvc/config


def settings(env: Mapping[str, str]) -> dict[str, str | None]:
    """The DVC remote's machine-specific settings, from the environment only."""
    return {
        "endpointurl": environment.env_value("DVC_REMOTE_ENDPOINT_URL", env)
        or environment.env_value("MLFLOW_S3_ENDPOINT_URL", env),
        "url": environment.env_value("DVC_REMOTE_URL", env),
    }


def configured(env: Mapping[str, str]) -> bool:
    """Whether a DVC remote is set up: an endpoint or remote URL in the environment, or .dvc/config.local."""
    local = environment.ROOT / ".dvc" / "config.local"
    return any(settings(env).values()) or (local.exists() and bool(local.read_text().strip()))


def configure(env: Mapping[str, str], root: Path | None = None) -> None:
    """Write the endpoint (and any URL override) to .dvc/config.local: untracked, and never a secret.

    Only what the environment sets is written; what a user put in config.local by hand stays.
    """
    if wanted := {key: value for key, value in settings(env).items() if value}:
        write_local(root or environment.ROOT, {f'remote "{NAME}"': wanted})


def use_folder(root: Path, name: str, folder: Path) -> None:
    """Make a local folder the default remote of the repository at `root` (in its .dvc/config.local)."""
    write_local(root, {f'remote "{name}"': {"url": str(folder)}, "core": {"remote": name}})


def write_local(root: Path, sections: Mapping[str, Mapping[str, str]]) -> None:
    """Set these keys in `root`'s .dvc/config.local, in DVC's own format (configobj's, as DVC writes it), keeping
    the rest: `dvc remote modify --local` would cost a second a setting."""
    from configobj import ConfigObj

    conf = ConfigObj(str(root / ".dvc" / "config.local"), write_empty_values=True)
    changed = False
    for name, values in sections.items():
        section = conf.setdefault(name, {})
        changed |= any(section.get(key) != value for key, value in values.items())
        section.update(values)
    if changed:
        conf.write()


class Location(NamedTuple):
    """Where the default DVC remote is, as DVC would read it (never printed whole: `options` may hold keys)."""

    name: str
    url: str  # s3://bucket/prefix, a folder, …
    endpoint: str | None
    endpoint_from: str  # the setting that named the endpoint, for the fix in a message
    options: dict[str, str]  # the remote's section of .dvc/config and .dvc/config.local


def _read_config(path: Path) -> dict[str, dict[str, str]]:
    """A DVC config file (configobj's INI dialect) as section → key → value; `remote "x"` becomes `remote x`."""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for raw in path.read_text(encoding="utf-8").splitlines() if path.is_file() else []:
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if header := re.fullmatch(r"\[\s*(['\"]?)(.+?)\1\s*\]", line):
            current = sections.setdefault(" ".join(header.group(2).replace('"', " ").split()), {})
        elif current is not None and "=" in line:
            key, _, value = line.partition("=")
            current[key.strip()] = value.strip().strip("'\"")
    return sections


def location(env: Mapping[str, str]) -> Location | None:
    """The default remote DVC would use here, from .dvc/config, .dvc/config.local and the environment."""
    config: dict[str, dict[str, str]] = {}
    for name in ("config", "config.local"):
        for section, values in _read_config(environment.ROOT / ".dvc" / name).items():
            config.setdefault(section, {}).update(values)
    name = config.get("core", {}).get("remote", NAME)
    options = config.get(f"remote {name}", {})
    overrides = settings(env)
    url = overrides["url"] or options.get("url")
    if not url:
        return None
    for variable in ("DVC_REMOTE_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL"):
        if endpoint := environment.env_value(variable, env):
            return Location(name, url, endpoint, variable, options)
    endpoint = options.get("endpointurl")
    return Location(name, url, endpoint, ".dvc/config.local's endpointurl" if endpoint else "", options)


def probe(where: Location, env: Mapping[str, str]) -> tuple[str, str] | None:
    """What is wrong with the remote (why, fix), or None when it is reachable, its bucket exists and takes writes.

    S3 remotes get a listing and a tiny object written and deleted again; a folder, a write-access test; other
    kinds are not probed (None).
    """
    if where.url.startswith("s3://"):
        return _probe_s3(where, env)
    if "://" not in where.url:
        folder = Path(where.url) if Path(where.url).is_absolute() else environment.ROOT / ".dvc" / where.url
        existing = next(p for p in [folder, *folder.parents] if p.exists())
        if not os.access(existing, os.W_OK):
            return f"the DVC remote folder {folder} is not writable here", "give this user write access to it"
    return None


def s3_client(where: Location, env: Mapping[str, str], read_timeout: float = 10) -> Any:
    """A boto3 S3 client of the remote `where`, with the credentials DVC would use (its options, else the
    environment's), a few seconds' timeouts and one attempt: a remote that does not answer says so at once."""
    import boto3
    from botocore.config import Config

    options, value = where.options, environment.env_value
    session = boto3.session.Session(
        aws_access_key_id=options.get("access_key_id") or value("AWS_ACCESS_KEY_ID", env),
        aws_secret_access_key=options.get("secret_access_key") or value("AWS_SECRET_ACCESS_KEY", env),
        aws_session_token=options.get("session_token") or value("AWS_SESSION_TOKEN", env),
        profile_name=options.get("profile"),
        region_name=options.get("region") or value("AWS_DEFAULT_REGION", env) or "us-east-1",
    )
    return session.client(
        "s3",
        endpoint_url=where.endpoint,
        verify=options.get("ssl_verify", "true").lower() != "false",
        config=Config(connect_timeout=3, read_timeout=read_timeout, retries={"total_max_attempts": 1}),
    )


def bucket_and_prefix(url: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` → ("bucket", "some/prefix"), without slashes at its ends."""
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    return bucket, prefix.strip("/")


def _probe_s3(where: Location, env: Mapping[str, str]) -> tuple[str, str] | None:
    import uuid

    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    bucket, prefix = bucket_and_prefix(where.url)
    endpoint = environment.redact(where.endpoint) if where.endpoint else "AWS S3"
    secrets = [v for k, v in where.options.items() if k in ("secret_access_key", "session_token")]
    credentials_fix = (
        "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (on the runner: secrets MINIO_ACCESS_KEY_ID and "
        "MINIO_SECRET_ACCESS_KEY)"
    )
    try:
        client = s3_client(where, env)
        step = "list"
        client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
        step = "write"
        key = f"{prefix + '/' if prefix else ''}.runloop-check/{uuid.uuid4().hex}"
        client.put_object(Bucket=bucket, Key=key, Body=b"")
        client.delete_object(Bucket=bucket, Key=key)
    except NoCredentialsError:
        return f"no S3 credentials for the DVC remote {where.url}", credentials_fix.replace("check", "set", 1)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", "?"))
        if code in ("NoSuchBucket", "404"):
            return (
                f"bucket {bucket!r} of the DVC remote {where.url} does not exist at {endpoint}",
                "create it, or point DVC_REMOTE_URL at a bucket that exists",
            )
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "403"):
            return f"{endpoint} refused the S3 credentials for {where.url} ({code})", credentials_fix
        verb = "write to" if step == "write" else "list"
        return (
            f"the S3 credentials may not {verb} {where.url} at {endpoint} ({code})",
            "grant them s3:ListBucket, s3:GetObject, s3:PutObject and s3:DeleteObject on the bucket",
        )
    except BotoCoreError as exc:
        said = environment.one_line(environment.scrub(type(exc).__name__, env, secrets), 80)
        return (
            f"the DVC remote's S3 endpoint {endpoint} is unreachable ({said})",
            f"check {where.endpoint_from or 'the endpoint'} and that the S3 service is up",
        )
    return None


def holds(env: Mapping[str, str], md5s: list[str]) -> set[str] | None:
    """Which of these content hashes the default DVC remote holds; None when no remote is configured."""
    if not configured(env):
        return None
    from dvc.repo import Repo

    with Repo(str(environment.ROOT)) as repo:
        return set(repo.cloud.get_remote_odb().oids_exist(md5s))
