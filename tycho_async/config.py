"""Config file, env indirection, dotenv and defaults, resolved once into frozen Settings.

Precedence, highest first: command-line options, ``TYCHOREG_*`` environment variables,
the config file, built-in defaults. With no config file and no registry URL, the registry
is a local directory in the user's data directory, so a fresh machine needs no setup.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .defaults import DEFAULT_CONFIG, DEFAULT_OUTDIR, default_local_root
from .errors import ConfigError
from .storage import LocalOptions, S3Options, StoreOptions
from .transfer.plan import MAX_PART, MIN_PART, TransferSettings

REGISTRY_ENV = "TYCHOREG_REGISTRY"
SECRET_KEYS = ("aws_secret_access_key", "aws_session_token", "aws_access_key_id")
# Keys of the s3 section that are ours; the S3 client takes the others as they are.
S3_OWN_KEYS = ("bucket", "prefix", "checksums", "addressing_style", "connect_timeout",
               "read_timeout")
# What aiobotocore's create_client takes besides the service name and the botocore
# Config, which is ours (a test keeps this list in step with aiobotocore).
S3_CLIENT_KEYS = ("endpoint_url", "region_name", "aws_access_key_id", "aws_secret_access_key",
                  "aws_session_token", "aws_account_id", "verify", "use_ssl", "api_version")
TYCHO_KEYS = ("backend", "outdir", "dotenv", "concurrency", "part_size", "signing_key",
              "allowed_signers")
SIGNING_KEY_ENV = "TYCHOREG_SIGNING_KEY"
ALLOWED_SIGNERS_ENV = "TYCHOREG_ALLOWED_SIGNERS"
PASSPHRASE_ENV = "TYCHOREG_SIGNING_KEY_PASSPHRASE"  # read when the key is, never stored
LOCAL_KEYS = ("path",)
SECTIONS = ("tycho", "s3", "local")
TIMEOUT_ENV = {"connect_timeout": "TYCHOREG_CONNECT_TIMEOUT",
               "read_timeout": "TYCHOREG_READ_TIMEOUT"}

_SIZE = re.compile(r"\s*(\d+)\s*([kmg]?)(i?b?)\s*", re.IGNORECASE)


@dataclass(frozen=True)
class Settings:
    store: StoreOptions  # the store's own options: where the registry is, how to reach it
    outdir: Path
    transfer: TransferSettings = field(default_factory=TransferSettings)
    config_path: Path | None = None
    warnings: tuple[str, ...] = ()
    default_registry: bool = False  # the local registry in the data folder, none chosen
    unset: tuple[str, ...] = ()  # env-indirected values left unresolved (info only)
    dotenv: Path | None = None  # the dotenv file tycho.dotenv names (no localname may)
    signing_key: Path | None = None  # the SSH key a push signs with (None: unsigned)
    allowed_signers: Path | None = None  # the policy pulls check (None: none)

    @property
    def backend(self) -> str:
        """"s3" or "local"."""
        return "s3" if isinstance(self.store, S3Options) else "local"

    @property
    def location(self) -> str:
        return self.store.location

    @property
    def own_files(self) -> tuple[str, ...]:
        """tychoreg's files besides the config that no localname may name: the dotenv
        file the config names."""
        return (self.dotenv.name,) if self.dotenv else ()


def parse_size(value: object, what: str) -> int:
    """Accept 8388608, "8388608", "8MiB", "8M", "512k"."""
    if isinstance(value, bool):
        raise ConfigError(f"{what} must be a size such as 8MiB, not {value!r}")
    if isinstance(value, int):
        return value
    match = _SIZE.fullmatch(str(value))
    if not match:
        raise ConfigError(f"{what} must be a size such as 8MiB, not {value!r}")
    number, unit = int(match.group(1)), match.group(2).lower()
    return number * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[unit]


def _positive_int(value: object, what: str) -> int:
    try:
        number = int(str(value))
    except ValueError:
        raise ConfigError(f"{what} must be a whole number, not {value!r}") from None
    if number < 1:
        raise ConfigError(f"{what} must be at least 1, not {number}")
    return number


class Unset(str):
    """An env-indirected value whose variable is unset and has no default: an error for
    every command but ``info``, which shows it as such."""


def resolve_env(value: Any, where: str, *, strict: bool = True) -> Any:
    """Replace every ``{"env": NAME, "default": VALUE}`` with the variable or the default."""
    if isinstance(value, dict):
        if "env" in value and set(value) <= {"env", "default"}:
            name = value["env"]
            if not isinstance(name, str):
                raise ConfigError(f"{where}: 'env' must name a variable")
            if name in os.environ:
                return os.environ[name]
            if "default" in value:
                return value["default"]
            if not strict:
                return Unset(name)
            raise ConfigError(f"{where}: variable {name} is not set and has no default")
        return {key: resolve_env(item, f"{where}.{key}", strict=strict)
                for key, item in value.items()}
    if isinstance(value, list):
        return [resolve_env(item, f"{where}[{i}]", strict=strict)
                for i, item in enumerate(value)]
    return value


def _set_only(section: dict[str, Any], where: str, unset: list[str]) -> dict[str, Any]:
    """Drop the ``Unset`` values of a section, noting each: the defaults then apply."""
    for key, value in section.items():
        if isinstance(value, Unset):
            unset.append(f"{where}.{key} (variable {value} is not set)")
    return {k: v for k, v in section.items() if not isinstance(v, Unset)}


def _unknown_keys(section: Mapping[str, Any], known: tuple[str, ...], where: str,
                  what: str = "key") -> list[str]:
    """A warning for every key nobody reads: a typo ("outdri") must not pass silently."""
    return [f"{where}: unknown {what} {key!r} ignored{_closest(key, known)}"
            for key in section if key not in known]


def _closest(key: str, known: tuple[str, ...]) -> str:
    """`` (did you mean 'path'?)`` for the known name closest to a typo, or nothing."""
    import difflib

    close = difflib.get_close_matches(key, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_s3_keys(section: Mapping[str, Any], where: str) -> str | None:
    """The first key of an s3 section that neither we nor the S3 client take, as an
    error message (the client would fail on it with a TypeError)."""
    known = S3_OWN_KEYS + S3_CLIENT_KEYS
    for key in section:
        if key not in known:
            return (f"{where}: unknown key {key!r} in the s3 section{_closest(key, known)}; "
                    f"it takes {', '.join(known)}")
    return None


def _seconds(value: object, what: str) -> float:
    """A timeout: a positive number of seconds."""
    try:
        number = float(str(value).strip().removesuffix("s"))
    except ValueError:
        raise ConfigError(f"{what} must be a number of seconds, not {value!r}") from None
    if not 0 < number <= 3600:
        raise ConfigError(f"{what} must be between 0 and 3600 seconds, not {value!r}")
    return number


def _read_config(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"config {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a JSON object")
    return data


def _section(data: Mapping[str, Any], name: str, path: Path) -> dict[str, Any]:
    section = data.get(name, {})
    if not isinstance(section, dict):
        raise ConfigError(f"config {path}: section {name!r} must be an object")
    return section


def _secret_warning(path: Path, raw_section: Mapping[str, Any]) -> str | None:
    """A literal secret in a file others can read deserves a warning."""
    literal = [k for k in SECRET_KEYS[:2] if isinstance(raw_section.get(k), str)]
    if not literal:
        return None
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        return (
            f"config {path} holds {literal[0]} and is readable by other users; "
            f"run: chmod 600 {path}"
        )
    return None


def parse_registry_url(url: str) -> dict[str, Any]:
    """``s3://bucket/prefix``, ``file:///path`` or a plain path."""
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ConfigError(f"registry URL {url!r} names no bucket (s3://BUCKET/PREFIX)")
        return {"backend": "s3", "bucket": parsed.netloc, "prefix": parsed.path}
    if parsed.scheme == "file":
        return {"backend": "local", "path": parsed.path}
    if parsed.scheme and len(parsed.scheme) > 1:
        raise ConfigError(f"registry URL {url!r}: use s3://BUCKET/PREFIX or a directory path")
    return {"backend": "local", "path": url}


def _normalize_prefix(prefix: object) -> str:
    if prefix is None:
        return ""
    if not isinstance(prefix, str):
        raise ConfigError(f"prefix must be a string, not {prefix!r}")
    parts = [p for p in prefix.split("/") if p]
    if any(p in {".", ".."} for p in parts):
        raise ConfigError(f"prefix {prefix!r} must not contain . or .. segments")
    return "".join(f"{p}/" for p in parts)


def _as_bool(value: object, what: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{what} must be true or false, not {value!r}")


def _transfer_settings(tycho: Mapping[str, Any], overrides: Mapping[str, Any],
                       env: Mapping[str, str]) -> TransferSettings:
    chosen: dict[str, Any] = {}
    for key, env_name in (("concurrency", "TYCHOREG_CONCURRENCY"),
                          ("part_size", "TYCHOREG_PART_SIZE")):
        for source, value in (("option", overrides.get(key)), (env_name, env.get(env_name)),
                              (f"tycho.{key}", tycho.get(key))):
            if value is not None:
                chosen[key] = (source, value)
                break
    base = TransferSettings()
    concurrency = base.concurrency
    part_size = base.part_size
    if "concurrency" in chosen:
        source, value = chosen["concurrency"]
        concurrency = _positive_int(value, f"concurrency ({source})")
        if concurrency > 256:
            raise ConfigError(f"concurrency ({source}) must be at most 256, not {concurrency}")
    if "part_size" in chosen:
        source, value = chosen["part_size"]
        part_size = parse_size(value, f"part size ({source})")
        if not MIN_PART <= part_size <= MAX_PART:
            raise ConfigError(f"part size ({source}) must be between 5MiB and 5GiB")
    return replace(base, concurrency=concurrency, part_size=part_size,
                   multipart_threshold=part_size)


class _Common:
    """What every backend's Settings share, gathered before the backend's own section is
    read: where the config came from, the warnings so far, which env-indirected values
    stayed unset, the dotenv file, the outdir and the transfer settings. (A plain class:
    a dataclass costs about a millisecond at import, on every command's start-up.)"""

    __slots__ = ("config_path", "dotenv", "outdir", "path", "signing", "transfer", "unset",
                 "warnings")

    def __init__(self, path: Path, config_path: Path | None, dotenv: Path | None,
                 warnings: list[str], unset: list[str], outdir: Path,
                 transfer: TransferSettings,
                 signing: tuple[Path | None, Path | None] = (None, None)) -> None:
        self.path = path
        self.config_path = config_path
        self.dotenv = dotenv
        self.warnings = warnings
        self.unset = unset
        self.outdir = outdir
        self.transfer = transfer
        self.signing = signing

    def settings(self, store: StoreOptions, *, default_registry: bool = False) -> Settings:
        return Settings(store=store, outdir=self.outdir, transfer=self.transfer,
                        config_path=self.config_path, warnings=tuple(self.warnings),
                        default_registry=default_registry, unset=tuple(self.unset),
                        dotenv=self.dotenv, signing_key=self.signing[0],
                        allowed_signers=self.signing[1])


def load_settings(
    config: str | None = None,
    registry: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    strict: bool = True,
    environment: bool = True,
) -> Settings:
    """Read the config (``config`` None means the default file, optional), apply the
    registry URL and overrides, and resolve env indirection (``strict`` False: leave an
    unset variable without default as an ``Unset`` value instead of failing).
    ``environment`` False (the Python API's default): no ``TYCHOREG_*`` variable and no
    ``./.tychoreg.json`` unless ``config`` names it; the AWS chain still applies."""
    env: Mapping[str, str] = os.environ if environment else {}
    overrides = overrides or {}
    path, config_path, data = _config_file(config, environment)
    tycho_raw = _section(data, "tycho", path)
    dotenv = _load_dotenv(tycho_raw, path)
    unset: list[str] = []
    tycho = _set_only(resolve_env(tycho_raw, "tycho", strict=strict), "tycho", unset)
    sections = _unknown_keys(data, SECTIONS, f"config {path}", "section")
    warnings: list[str] = [*sections, *_unknown_keys(tycho_raw, TYCHO_KEYS,
                                                     f"config {path}: tycho")]
    local_typos = _unknown_keys(_section(data, "local", path), LOCAL_KEYS,
                                f"config {path}: local")
    warnings += local_typos

    registry = registry or env.get(REGISTRY_ENV) or None
    backend_name = tycho.get("backend")
    section_raw = _backend_section(data, backend_name, registry, path, sections)
    if "s3" in data and backend_name != "s3":
        typo = _check_s3_keys(_section(data, "s3", path), f"config {path}")
        if typo:
            warnings.append(typo)
    section = _set_only(resolve_env(section_raw, backend_name or "backend", strict=strict),
                        backend_name or "backend", unset)
    kind = backend_name or "local"
    if registry:
        kind, section = _with_registry_url(kind, section, registry)
    outdir = _outdir(overrides, env, tycho, path)
    if config_path is not None:
        warning = _secret_warning(config_path, section_raw)
        if warning:
            warnings.append(warning)
    common = _Common(path, config_path, dotenv, warnings, unset, outdir,
                     _transfer_settings(tycho, overrides, env),
                     (_path_setting("signing_key", SIGNING_KEY_ENV, overrides, env, tycho, path),
                      _path_setting("allowed_signers", ALLOWED_SIGNERS_ENV, overrides, env,
                                    tycho, path)))
    if kind == "local":
        root = _local_root(section, backend_name == "local" and not registry, common,
                           local_typos, strict=strict)
        return common.settings(
            LocalOptions(Path(root).expanduser() if root else default_local_root()),
            default_registry=not root)
    if kind != "s3":
        raise ConfigError(f"unknown backend {kind!r}: use 's3' or 'local'")
    typo = _check_s3_keys(section_raw, f"config {path}") if backend_name == "s3" else None
    if typo:
        raise ConfigError(typo)
    return common.settings(_s3_options(section, common, env, strict=strict))


def _config_file(config: str | None, environment: bool
                 ) -> tuple[Path, Path | None, dict[str, Any]]:
    """The config's path (for messages), the file read (None: none) and its contents:
    the file ``config`` names, else the default file if the environment counts and it
    exists."""
    path = Path(config) if config is not None else Path(DEFAULT_CONFIG)
    if config is not None or (environment and path.exists()):
        return path, path, _read_config(path)
    return path, None, {}


def _load_dotenv(tycho_raw: Mapping[str, Any], path: Path) -> Path | None:
    """Load the dotenv file tycho.dotenv names (before any env indirection is resolved,
    never overriding a variable already set); the file, or None."""
    dotenv = tycho_raw.get("dotenv")
    if dotenv is None:
        return None
    if not isinstance(dotenv, str):
        raise ConfigError(f"config {path}: tycho.dotenv must be a file name")
    from dotenv import load_dotenv

    load_dotenv(Path(dotenv).expanduser(), override=False)
    return Path(dotenv).expanduser()


def _backend_section(data: Mapping[str, Any], backend_name: object, registry: str | None,
                     path: Path, sections: list[str]) -> dict[str, Any]:
    """The raw section tycho.backend names ({} when none is named); a section described
    but never chosen is refused, so it never quietly becomes the default registry."""
    if backend_name is not None:
        if not isinstance(backend_name, str) or backend_name not in data:
            raise ConfigError(
                f"config {path}: tycho.backend is {backend_name!r} but there is no such section"
            )
        return _section(data, backend_name, path)
    if not registry and (named := [s for s in ("s3", "local") if s in data]):
        hint = "; ".join(sections)
        raise ConfigError(
            f"config {path} has a {named[0]!r} section but no tycho.backend naming it: add "
            f'"tycho": {{"backend": "{named[0]}"}}' + (f" ({hint})" if hint else ""))
    return {}


def _with_registry_url(kind: str, section: dict[str, Any], registry: str
                       ) -> tuple[str, dict[str, Any]]:
    """The backend and section once a registry URL applies: it overrides the section's
    location, and replaces the section whole when it names another backend."""
    url = parse_registry_url(registry)
    if url.pop("backend") != kind:
        kind, section = ("s3" if "bucket" in url else "local"), {}
    section.update(url)
    return kind, section


def _outdir(overrides: Mapping[str, Any], env: Mapping[str, str], tycho: Mapping[str, Any],
            path: Path) -> Path:
    """Where pulls land: the option, else TYCHOREG_OUTDIR, else tycho.outdir."""
    outdir = overrides.get("outdir") or env.get("TYCHOREG_OUTDIR") or tycho.get(
        "outdir", DEFAULT_OUTDIR
    )
    if not isinstance(outdir, str) or not outdir:
        raise ConfigError(f"config {path}: tycho.outdir must be a directory name")
    return Path(outdir).expanduser()


def _path_setting(key: str, env_name: str, overrides: Mapping[str, Any],
                  env: Mapping[str, str], tycho: Mapping[str, Any], path: Path) -> Path | None:
    """A file setting of signing: the option, else its TYCHOREG_ variable, else
    tycho.KEY; None when none names one (an empty value names none)."""
    value = overrides.get(key) or env.get(env_name) or tycho.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, (str, Path)):
        raise ConfigError(f"config {path}: tycho.{key} must be a file path")
    return Path(value).expanduser()


def _local_root(section: Mapping[str, Any], needs_path: bool, common: _Common,
                local_typos: list[str], *, strict: bool) -> str | None:
    """The local registry's directory (None: the default one in the data folder); a
    local section chosen by tycho.backend must name it."""
    root = section.get("path")
    if root is not None and not isinstance(root, str):
        raise ConfigError("local registry path must be a string")
    if not root and needs_path:
        if not strict and any(u.startswith("local.path ") for u in common.unset):
            return "(unset)"  # shown by info; every other command refuses it
        hint = "".join(f"; {typo}" for typo in local_typos)
        raise ConfigError(f"config {common.path}: the local section needs a 'path' (the "
                          f"registry's directory){hint}")
    return root


def _s3_options(section: Mapping[str, Any], common: _Common, env: Mapping[str, str], *,
                strict: bool) -> S3Options:
    """The S3 store's options from its resolved section: our own keys checked, the rest
    passed to the client."""
    bucket = section.get("bucket")
    if bucket is None and common.unset and not strict:
        bucket = "(unset)"  # shown by info, which refuses to --probe it
    if not isinstance(bucket, str) or not bucket:
        raise ConfigError(f"config {common.path}: the s3 section needs a 'bucket'")
    timeouts = {key: _seconds(value, f"{key} ({source})")
                for key, (source, value) in _timeouts(section, env).items()}
    return S3Options(
        bucket=bucket,
        prefix=_normalize_prefix(section.get("prefix")),
        client_kwargs={k: v for k, v in section.items() if k in S3_CLIENT_KEYS},
        checksums=_as_bool(section.get("checksums", True), "s3.checksums"),
        addressing_style=section.get("addressing_style"),
        max_connections=common.transfer.concurrency + 2,  # the engine's budget, and a spare pair
        chunk_size=common.transfer.chunk_size,
        **timeouts,
    )


def _timeouts(section: Mapping[str, Any], env: Mapping[str, str]
              ) -> dict[str, tuple[str, object]]:
    """Each timeout set by a variable (first) or the s3 section, with where it came from."""
    chosen: dict[str, tuple[str, object]] = {}
    for key, env_name in TIMEOUT_ENV.items():
        if env.get(env_name):
            chosen[key] = (env_name, env[env_name])
        elif section.get(key) is not None:
            chosen[key] = (f"s3.{key}", section[key])
    return chosen
