"""`--lora REPO[@REVISION][:NAME][:WEIGHT]` and `--upscaler REPO[@REVISION][:NAME]`: parsing,
the settings' validation, and local sources refusing a revision. (The fetch of a pinned
revision, by `download` and then offline by the server, is in test_prefetch.py.)"""

from __future__ import annotations

import pytest

from inference.__main__ import parse
from inference.engine.hub import revision_problem
from inference.engine.lora import LoraSpec, LoraSpecError, fetch_adapter
from inference.engine.upscalers import UpscalerSpec, UpscalerSpecError, fetch_upscaler

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(
    "text,expected",
    [
        ("org/ink", LoraSpec("org/ink", "ink", 1.0, None)),
        ("org/ink@v2", LoraSpec("org/ink", "ink", 1.0, "v2")),
        ("org/ink@v2:0.5", LoraSpec("org/ink", "ink", 0.5, "v2")),
        ("org/ink@refs/pr/1:pr", LoraSpec("org/ink", "pr", 1.0, "refs/pr/1")),
        (f"org/ink@{SHA}:ink:-0.8", LoraSpec("org/ink", "ink", -0.8, SHA)),
        ("org/ink@release/2024.1:ink", LoraSpec("org/ink", "ink", 1.0, "release/2024.1")),
        ("/loras/ink:ink:0.6", LoraSpec("/loras/ink", "ink", 0.6, None)),
    ],
)
def test_lora_specs_take_an_optional_revision(text, expected):
    assert LoraSpec.parse(text) == expected


@pytest.mark.parametrize(
    "text,expected",
    [
        ("ai-forever/Real-ESRGAN:R-ESRGAN 4x+", UpscalerSpec("ai-forever/Real-ESRGAN", "R-ESRGAN 4x+", None)),
        ("ai-forever/Real-ESRGAN@refs/pr/3:R-ESRGAN 4x+", UpscalerSpec("ai-forever/Real-ESRGAN", "R-ESRGAN 4x+", "refs/pr/3")),
        (f"ai-forever/Real-ESRGAN@{SHA}", UpscalerSpec("ai-forever/Real-ESRGAN", "Real-ESRGAN", SHA)),
        ("builtin:tiny-upscaler:tiny", UpscalerSpec("builtin:tiny-upscaler", "tiny", None)),
        ("/models/esrgan/:x4", UpscalerSpec("/models/esrgan/", "x4", None)),
    ],
)
def test_upscaler_specs_take_an_optional_revision(text, expected):
    assert UpscalerSpec.parse(text) == expected


BAD_REVISIONS = [
    ("org/x@", "empty"),
    ("@v1", "repo before '@' is empty"),
    ("org/x@a..b", "not a branch, tag or commit"),
    ("org/x@has space", "not a branch, tag or commit"),
    ("org/x@refs/pr/1/", "not a branch, tag or commit"),
    ("org/x@refs//pr", "not a branch, tag or commit"),
    ("org/x@/main", "not a branch, tag or commit"),
    ("org/x@.hidden", "not a branch, tag or commit"),
    ("org/x@v1.lock", "not a branch, tag or commit"),
    ("org/x@main~1", "not a branch, tag or commit"),
    ("org/x@HEAD^", "not a branch, tag or commit"),
    ("org/x@a@{1}", "not a branch, tag or commit"),
    ("org/x@-rf", "not a branch, tag or commit"),
    ("/loras/ink@v1", "'/loras/ink' is a local path"),
    ("./ink@v1", "'./ink' is a local path"),
]


@pytest.mark.parametrize("source,says", BAD_REVISIONS)
def test_bad_lora_revisions_are_refused_naming_the_entry(source, says):
    text = f"{source}:ink"
    with pytest.raises(LoraSpecError, match=says) as error:
        LoraSpec.parse(text)
    assert str(error.value).startswith(f"--lora {text!r}: ")


@pytest.mark.parametrize("source,says", [*BAD_REVISIONS, ("builtin:tiny-upscaler@v1", "takes no revision")])
def test_bad_upscaler_revisions_are_refused_naming_the_entry(source, says):
    text = f"{source}:x4"
    with pytest.raises(UpscalerSpecError, match=says) as error:
        UpscalerSpec.parse(text)
    assert str(error.value).startswith(f"--upscaler {text!r}: ")


def test_revisions_git_allows_are_accepted():
    for revision in ("main", "v1.0", "refs/pr/1", "refs/convert/parquet", SHA, "feature/a-b_c", "user@host", "v1+build"):
        assert revision_problem(revision) is None, revision


def test_a_local_directory_whose_name_holds_an_at_sign_is_a_path(tmp_path):
    folder = tmp_path / "ink@2"
    folder.mkdir()
    assert LoraSpec.parse(f"{folder}:ink") == LoraSpec(str(folder), "ink", 1.0, None)
    assert UpscalerSpec.parse(f"{folder}:x4") == UpscalerSpec(str(folder), "x4", None)


def test_fetch_refuses_a_revision_for_a_source_that_is_a_local_directory(tmp_path, monkeypatch):
    # A relative directory that appeared after parsing: read as it is, it would not be the pinned revision.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "ink").mkdir(parents=True)
    with pytest.raises(LoraSpecError, match="'org/ink' is a local path"):
        fetch_adapter(LoraSpec("org/ink", "ink", 1.0, "v2"), tmp_path / "cache")
    with pytest.raises(UpscalerSpecError, match="only a Hub repo takes a revision"):
        fetch_upscaler(UpscalerSpec("org/ink", "x4", "v2"), tmp_path / "cache")
    with pytest.raises(UpscalerSpecError, match="only a Hub repo takes a revision"):
        fetch_upscaler(UpscalerSpec("builtin:tiny-upscaler", "x4", "v2"), tmp_path / "cache")


def test_settings_accept_pinned_specs_and_name_a_bad_entry(capsys):
    environ = {"SD_LORA": "org/ink@refs/pr/1:ink-pr,org/ink:ink", "SD_UPSCALER": f"org/esrgan@{SHA}:x4"}
    for command in ("download", "serve"):  # the init container and the server read the same list
        _, settings = parse([command], environ)
        assert [LoraSpec.parse(text).revision for text in settings.lora] == ["refs/pr/1", None]
        assert UpscalerSpec.parse(settings.upscaler[0]).revision == SHA
    for argv, env, flag, entry in (
        (["serve", "--lora", "org/ink@a..b:ink"], {}, "--lora / SD_LORA", "org/ink@a..b:ink"),
        (["serve"], {"SD_UPSCALER": "org/e:x4,/models/e@v1:x2"}, "--upscaler / SD_UPSCALER", "/models/e@v1:x2"),
        (["download"], {"SD_LORA": "org/ink@v1:ink,org/other@v2:ink"}, "--lora / SD_LORA", "org/other@v2:ink"),
    ):
        with pytest.raises(SystemExit) as exit_:
            parse(argv, env)
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert flag in err and entry in err, err
