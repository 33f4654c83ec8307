"""LoRA specs and the `<lora:NAME:WEIGHT>` prompt syntax."""

from __future__ import annotations

import pytest

from inference.engine.lora import LoraSpec, LoraSpecError, UnknownLoraError, extract_adapters


@pytest.mark.parametrize(
    "text,source,name,weight",
    [
        ("/loras/ink-style", "/loras/ink-style", "ink-style", 1.0),
        ("/loras/ink-style:ink", "/loras/ink-style", "ink", 1.0),
        ("/loras/ink-style:ink:0.6", "/loras/ink-style", "ink", 0.6),
        ("/loras/ink-style:0.6", "/loras/ink-style", "ink-style", 0.6),
        ("org/pixel-lora", "org/pixel-lora", "pixel-lora", 1.0),
        ("/loras/detail.safetensors:-1.5", "/loras/detail.safetensors", "detail", -1.5),
    ],
)
def test_lora_spec_parsing(text, source, name, weight):
    assert LoraSpec.parse(text) == LoraSpec(source, name, weight)


@pytest.mark.parametrize("text", ["", ":name", "a:b:c:d", "dir:name:heavy", "dir:bad name"])
def test_bad_lora_specs_are_refused_with_the_flag_named(text):
    with pytest.raises(LoraSpecError, match="--lora"):
        LoraSpec.parse(text)


def test_prompt_tags_are_stripped_and_become_the_active_set():
    loaded = {"ink": LoraSpec("/x", "ink", 0.8), "pixel": LoraSpec("/y", "pixel")}
    prompt, active = extract_adapters("a harbour <lora:pixel:0.5>, at night <lora:ink>", loaded)
    assert prompt == "a harbour, at night"
    assert active == (("ink", 0.8), ("pixel", 0.5))  # sorted; ink takes its default weight
    assert extract_adapters("plain prompt", loaded) == ("plain prompt", ())


def test_unknown_adapter_names_the_adapter_and_the_choices():
    with pytest.raises(UnknownLoraError) as error:
        extract_adapters("x <lora:nope:1>", {"ink": LoraSpec("/x", "ink")})
    assert "'nope'" in str(error.value) and "ink" in str(error.value)


def test_the_one_lora_file_fetched_and_loaded_from_a_repo():
    from inference.engine.lora import lora_weight_file

    trained = ["README.md", "checkpoint-500/pytorch_lora_weights.safetensors", "optimizer.bin",
               "pytorch_lora_weights.bin", "pytorch_lora_weights.safetensors", "samples.safetensors"]
    assert lora_weight_file(trained, "a/b") == "pytorch_lora_weights.safetensors"
    assert lora_weight_file(["README.md", "ink-v2.safetensors", "ink-v1.safetensors"], "a/b") == "ink-v1.safetensors"
    assert lora_weight_file(["pytorch_lora_weights.bin", "scheduler.bin"], "a/b") == "pytorch_lora_weights.bin"
    with pytest.raises(FileNotFoundError, match="'a/b' has no .safetensors or .bin"):
        lora_weight_file(["README.md", "checkpoint-1/x.safetensors"], "a/b")
