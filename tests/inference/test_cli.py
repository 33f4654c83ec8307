"""`python -m inference serve|download`: flags, their SD_* variables, and clear errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from inference.__main__ import parse
from inference.config import ServerSettings, env_name, flag_name

from .server import REPO, ServerProcess


def test_every_setting_is_a_flag_and_an_environment_variable():
    help_text = subprocess.run(
        [sys.executable, "-m", "inference", "serve", "--help"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    for name in ServerSettings.model_fields:
        assert flag_name(name) in help_text and env_name(name) in help_text


def test_environment_sets_defaults_and_flags_win(tmp_path):
    environ = {"SD_MAX_BATCH_SIZE": "3", "SD_PORT": "9001", "SD_CORS_ORIGINS": "https://a.example, https://b.example",
               "SD_MODEL": "stabilityai/sd-turbo", "SD_CACHE_DIR": str(tmp_path)}
    command, settings = parse(["serve", "--port", "9100"], environ)
    assert command == "serve"
    assert settings.max_batch_size == 3
    assert settings.port == 9100
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert settings.model == ["stabilityai/sd-turbo"] and settings.cache_dir == tmp_path


def test_download_takes_model_revision_and_cache_dir(tmp_path):
    command, settings = parse(["download", "--model", "org/repo", "--revision", "abc123", "--cache-dir", str(tmp_path)], {})
    assert (command, settings.model, settings.revision, settings.cache_dir) == ("download", ["org/repo"], "abc123", tmp_path)


def test_download_and_serve_read_the_same_device_and_dtype():
    # The dtype decides which weight files are fetched; the Deployment gives both containers SD_DEVICE.
    environ = {"SD_DEVICE": "cuda", "SD_DTYPE": "float16"}
    for command in ("download", "serve"):
        _, settings = parse([command], environ)
        assert (settings.device, settings.dtype) == ("cuda", "float16"), command
    _, settings = parse(["download", "--device", "cpu", "--dtype", "float32"], environ)
    assert (settings.device, settings.dtype) == ("cpu", "float32")


def test_models_and_loras_repeat_or_comma_separate_and_flags_replace_the_environment():
    environ = {"SD_MODEL": "org/a,org/b@v2", "SD_LORA": "/loras/ink:ink:0.5"}
    _, from_env = parse(["serve"], environ)
    assert from_env.model == ["org/a", "org/b@v2"] and from_env.lora == ["/loras/ink:ink:0.5"]
    _, from_flags = parse(["serve", "--model", "builtin:tiny", "--model", "builtin:tiny-sdxl,org/c"], environ)
    assert from_flags.model == ["builtin:tiny", "builtin:tiny-sdxl", "org/c"]
    assert from_flags.default_model == "builtin:tiny"


@pytest.mark.parametrize(
    "argv,environ,named",
    [
        (["serve", "--port", "http"], {}, "--port / SD_PORT"),
        (["serve"], {"SD_MAX_BATCH_SIZE": "0"}, "--max-batch-size / SD_MAX_BATCH_SIZE"),
        (["serve", "--dtype", "float8"], {}, "--dtype / SD_DTYPE"),
        (["download"], {"SD_DTYPE": "float8"}, "--dtype / SD_DTYPE"),
        (["serve", "--auth-file", "/no/such/htpasswd"], {}, "--auth-file / SD_AUTH_FILE"),
        (["serve", "--lora", "/l/ink:ink:heavy"], {}, "--lora / SD_LORA"),
        (["serve"], {"SD_LORA": "/a/ink,/b/ink"}, "--lora / SD_LORA"),
        (["serve", "--max-loaded-models", "0"], {}, "--max-loaded-models / SD_MAX_LOADED_MODELS"),
    ],
)
def test_bad_settings_exit_2_naming_flag_and_variable(argv, environ, named, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse(argv, environ)
    assert exit_.value.code == 2
    assert named in capsys.readouterr().err


def test_download_builds_the_builtin_model_into_the_cache(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "inference", "download", "--model", "builtin:tiny-sdxl", "--cache-dir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    written = list(tmp_path.glob("builtin/tiny-sdxl-v*/model_index.json"))
    assert len(written) == 1
    assert "text_encoder_2" in written[0].read_text()


def test_download_of_an_unknown_builtin_fails_with_one_clear_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "inference", "download", "--model", "builtin:huge", "--cache-dir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 1
    assert "unknown builtin model 'builtin:huge'" in result.stderr and "Traceback" not in result.stderr


def test_a_model_that_cannot_load_makes_serve_exit_non_zero(tmp_path, cache_dir):
    server = ServerProcess("--model", str(tmp_path / "missing-model-dir"), cache_dir=cache_dir, log_path=tmp_path / "log")
    try:
        assert server.process.wait(timeout=120) == 1
    finally:
        server.stop()
    assert "could not load model" in server.log()
