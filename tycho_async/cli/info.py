"""info: where the registry is and which settings apply (the store probed only on
request)."""

from typing import Annotated, Any

import typer

from .. import __version__
from ..errors import UsageError
from ..units import human_size
from .options import Command, ConfigOpt, JsonOpt, RegistryOpt
from .render import echo_json, table
from .run import cli_command, execute, settings_for

group = typer.Typer()  # these commands; the root (cli/__init__.py) lists every group in order


@group.command(cls=Command, short_help="Where the registry is and which settings apply.")
@cli_command
def info(
    config: ConfigOpt = None, registry: RegistryOpt = None, as_json: JsonOpt = False,
    probe: Annotated[bool, typer.Option(
        "--probe", help="Also ask the store whether it honours conditional writes, by "
        "writing and removing a probe object under the registry root.")] = False,
) -> None:
    """Where the registry is and which settings apply (no network unless --probe)."""
    import os

    from ..config import SECRET_KEYS
    from ..logs import redact_url
    from ..storage import S3Options

    settings = settings_for(config, registry, strict=False)
    data: dict[str, Any] = {
        "version": __version__,
        "config": str(settings.config_path) if settings.config_path else None,
        "backend": settings.backend,
        "registry": redact_url(settings.location),
        "outdir": str(settings.outdir),
        "concurrency": settings.transfer.concurrency,
        "part_size": human_size(settings.transfer.part_size),
        "signing_key": str(settings.signing_key) if settings.signing_key else None,
        "allowed_signers": (str(settings.allowed_signers) if settings.allowed_signers
                            else None),
    }
    for unset in settings.unset:
        data.setdefault("unset", []).append(unset)
    if isinstance(settings.store, S3Options):
        kwargs = settings.store.client_kwargs
        env = os.environ
        endpoint = (kwargs.get("endpoint_url") or env.get("AWS_ENDPOINT_URL_S3")
                    or env.get("AWS_ENDPOINT_URL"))
        data["endpoint_url"] = redact_url(str(endpoint)) if endpoint else None
        data["region"] = (kwargs.get("region_name") or env.get("AWS_REGION")
                          or env.get("AWS_DEFAULT_REGION"))
        data["credentials"] = ("from the config" if kwargs.get(SECRET_KEYS[0])
                               else "the AWS credential chain")
        data["connect_timeout"] = settings.store.connect_timeout  # seconds
        data["read_timeout"] = settings.store.read_timeout
    if probe:
        if settings.unset:
            raise UsageError("cannot --probe while a config value is unset: "
                             + "; ".join(settings.unset))
        found = execute(settings, lambda reg: reg.probe())
        data["conditional_writes"] = ("honoured" if found.if_none_match and found.if_match
                                      else "IGNORED (If-None-Match: "
                                      f"{'ok' if found.if_none_match else 'ignored'}, If-Match: "
                                      f"{'ok' if found.if_match else 'ignored'})")
    if as_json:
        echo_json({"schema": 1, "command": "info", **data})
        return
    table(("SETTING", "VALUE"), [(k, "-" if v is None else
                                   "; ".join(v) if isinstance(v, list) else str(v))
                                  for k, v in data.items()])

