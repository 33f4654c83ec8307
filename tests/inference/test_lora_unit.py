"""LoRA specs and the `<lora:NAME:WEIGHT>` prompt syntax."""

from __future__ import annotations

import re

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
    assert active == (("ink", 0.8, 0.8), ("pixel", 0.5, 0.5))  # sorted; ink takes its default weight
    assert extract_adapters("plain prompt", loaded) == ("plain prompt", ())


@pytest.mark.parametrize(
    ("tag", "weights"),
    [
        ("<lora:ink>", (0.8, 0.8)),  # the adapter's default weight, both
        ("<lora:ink:0.5>", (0.5, 0.5)),
        ("<lora:ink:0.5:1.2>", (0.5, 1.2)),  # AUTOMATIC1111: text encoder, then UNet
        ("<lora:ink:0.5:1.2:8>", (0.5, 1.2)),  # dyn: a LyCORIS rank limit, nothing for a LoRA
        ("<lora:ink:unet=0.3>", (0.8, 0.3)),
        ("<lora:ink:te=0:unet=1>", (0.0, 1.0)),
        ("<lora:ink:1:te=0.25>", (0.25, 0.25)),  # named wins; UNet follows the text encoder
        ("<LORA:ink:1:dyn=16>", (1.0, 1.0)),
    ],
)
def test_a1111_tag_weights_for_the_text_encoder_and_the_unet(tag, weights):
    _, active = extract_adapters(f"a harbour {tag}", {"ink": LoraSpec("/x", "ink", 0.8)})
    assert active == (("ink", *weights),)


@pytest.mark.parametrize(
    ("tag", "message"),
    [
        ("<lora:ink:heavy>", "the weight must be a number"),
        ("<lora:ink:1:much>", "the unet weight must be a number"),
        ("<lora:ink:te=nan>", "the te weight must be a number"),
        ("<lora:ink:lbw=OUTALL>", "unknown parameter lbw; a LoRA tag takes te=, unet= and dyn="),
        ("<lora:ink:1:1:8:2>", "at most"),
        ("<lora:ink:1:1:big>", "dyn must be a whole number"),
    ],
)
def test_bad_tag_parameters_are_named(tag, message):
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        extract_adapters(f"x {tag}", {"ink": LoraSpec("/x", "ink")})
    assert tag in str(error.value)


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
