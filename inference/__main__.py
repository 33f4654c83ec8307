"""`python -m inference serve ...` and `python -m inference download ...`."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from pydantic import BaseModel, ValidationError

from .config import ModelSettings, ServerSettings, env_name, flag_name


def _add_flags(parser: argparse.ArgumentParser, settings_class: type[BaseModel]) -> None:
    """One flag per settings field; its default is the `SD_*` variable when that is set."""
    for name, field in settings_class.model_fields.items():
        env = env_name(name)
        help_text = f"{field.description} [env {env}]"
        parser.add_argument(flag_name(name), dest=name, default=os.environ.get(env), help=help_text, metavar=name.upper())


def _settings(settings_class: type[BaseModel], namespace: argparse.Namespace):
    values = {name: getattr(namespace, name) for name in settings_class.model_fields if getattr(namespace, name) is not None}
    try:
        return settings_class.model_validate(values)
    except ValidationError as error:
        for problem in error.errors():
            field = str(problem["loc"][0]) if problem["loc"] else ""
            where = f"{flag_name(field)} / {env_name(field)}" if field else "settings"
            print(f"error: {where}: {problem['msg']}", file=sys.stderr)
        raise SystemExit(2) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inference", description="Stable Diffusion inference server")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_flags(commands.add_parser("serve", help="serve the HTTP API"), ServerSettings)
    _add_flags(commands.add_parser("download", help="prefetch a model into the cache"), ModelSettings)
    args = parser.parse_args(argv)

    if args.command == "download":
        settings = _settings(ModelSettings, args)
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        from .engine.loading import download

        where = download(settings.model, cache_dir=settings.cache_dir, revision=settings.revision)
        print(f"{settings.model} is in {where}")
        return 0

    settings = _settings(ServerSettings, args)
    from .server import serve

    return serve(settings)


if __name__ == "__main__":
    sys.exit(main())
