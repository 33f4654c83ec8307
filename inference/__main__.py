"""`python -m inference serve ...` and `python -m inference download ...`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping

from pydantic import BaseModel, ValidationError

from .config import ModelSettings, ServerSettings, env_name, flag_name, is_list_setting

COMMANDS: dict[str, tuple[type[BaseModel], str]] = {
    "serve": (ServerSettings, "serve the HTTP API and the web playground"),
    "download": (
        ModelSettings,
        "prefetch into the cache exactly the files `serve` will load, for the same --device/--dtype"
        " (the Deployment's init container)",
    ),
}


def _add_flags(parser: argparse.ArgumentParser, settings_class: type[BaseModel], environ: Mapping[str, str]) -> None:
    """One flag per settings field; its default is the `SD_*` variable when that is set.

    List settings take the flag repeatedly (or comma-separated); given on the command
    line, they replace the variable's list rather than add to it.
    """
    for name, field in settings_class.model_fields.items():
        env = env_name(name)
        repeatable = is_list_setting(settings_class, name)
        parser.add_argument(
            flag_name(name),
            dest=name,
            action="append" if repeatable else "store",
            default=None,
            help=f"{field.description} [env {env}{', comma-separated' if repeatable else ''}]",
            metavar=name.upper(),
        )
    parser.set_defaults(_environ_defaults={name: environ.get(env_name(name)) for name in settings_class.model_fields})


def parse(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> tuple[str, BaseModel]:
    """Command line + environment -> (command, validated settings). Exits 2 on bad input."""
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(prog="python -m inference", description="Stable Diffusion inference server")
    commands = parser.add_subparsers(dest="command", required=True)
    for command, (settings_class, help_text) in COMMANDS.items():
        _add_flags(commands.add_parser(command, help=help_text, description=help_text), settings_class, environ)
    args = parser.parse_args(argv)
    settings_class = COMMANDS[args.command][0]
    values = {}
    for name in settings_class.model_fields:
        value = getattr(args, name)
        if value is None:
            value = args._environ_defaults.get(name)
        if value is not None:
            values[name] = value
    try:
        return args.command, settings_class.model_validate(values)
    except ValidationError as error:
        for problem in error.errors():
            field = str(problem["loc"][0]) if problem["loc"] else ""
            where = f"{flag_name(field)} / {env_name(field)}" if field else "settings"
            print(f"error: {where}: {problem['msg']}", file=sys.stderr)
        raise SystemExit(2) from None


def download(settings: ModelSettings) -> int:
    """Prefetch every model, LoRA adapter and learned upscaler of the settings (the init container).

    The device and dtype are decided as `serve` decides them, so the same weight files
    (the fp16 variant for float16) are fetched; the init container has no GPU of its own,
    so the Deployment sets SD_DEVICE for both containers. Each fetch is the function the
    server calls before it loads the same thing (models at start or on first selection,
    adapters at start, upscalers on first use).
    """
    from .engine.loading import choose_device, fetch_model
    from .engine.lora import LoraSpec, LoraSpecError, fetch_adapter
    from .engine.registry import model_refs
    from .engine.upscalers import UpscalerSpec, fetch_upscaler

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        adapters = [LoraSpec.parse(text) for text in settings.lora]
    except LoraSpecError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        device = choose_device(settings.device, settings.dtype)
    except ValueError as error:
        print(f"error: --device / SD_DEVICE, --dtype / SD_DTYPE: {error}", file=sys.stderr)
        return 2
    refs = model_refs(settings.model, settings.revision)

    def fetch(ref):
        fetched = fetch_model(ref.name, cache_dir=settings.cache_dir, revision=ref.revision, device=device)
        return f"{fetched.folder} ({fetched.variant or 'default'} weights, for {device.device}/{device.dtype_name})"

    jobs = [(ref.name, lambda ref=ref: fetch(ref)) for ref in refs]
    jobs += [(spec.pinned_source, lambda spec=spec: fetch_adapter(spec, settings.cache_dir)) for spec in adapters]
    # Parsed already by the settings' validator (bad specs never get here).
    upscalers = [UpscalerSpec.parse(text) for text in settings.upscaler]
    jobs += [(spec.pinned_source, lambda spec=spec: fetch_upscaler(spec, settings.cache_dir)) for spec in upscalers]
    for what, fetch_one in jobs:
        try:
            where = fetch_one()
        except Exception as error:  # a clear one-line reason for the init container's log
            print(f"error: could not download {what!r}: {type(error).__name__}: {error}", file=sys.stderr)
            return 1
        print(f"{what} is in {where}")
    return 0


def main(argv: list[str] | None = None) -> int:
    command, settings = parse(argv)
    # parse() validated with COMMANDS[command]'s settings class; the isinstance checks say so to the type checker.
    if command == "download" and isinstance(settings, ModelSettings):
        return download(settings)
    if command == "serve" and isinstance(settings, ServerSettings):
        from .server import serve

        return serve(settings)
    raise AssertionError(f"parse() returned {type(settings).__name__} for {command!r}")


if __name__ == "__main__":
    sys.exit(main())
