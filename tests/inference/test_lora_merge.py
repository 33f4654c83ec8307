"""LoRA adapters merged into the UNet's weights per batch (engine/lora_merge.py).

The reference is diffusers' own adapter path (PEFT layers adding `scale * B(A(x))` at
every call): a merged adapter must make the same image within float rounding, and taking
it off must give back the UNet's weights bit for bit. With a compiled UNet (a real
torch.compile through dynamo's counting "eager" backend, as in test_compiled_shapes.py),
a batch with adapters must run the warmed graphs and compile nothing.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
import torch
from peft.tuners.tuners_utils import BaseTunerLayer

from inference.engine.builtin import ensure_builtin
from inference.engine.compiled_shapes import ungate
from inference.engine.fast_path import choose_fast_path
from inference.engine.generate import BatchKey, ImageTask
from inference.engine.lora import LoraSpec, activate, load_adapters, take_unet_adapters
from inference.engine.lora_merge import UnetAdapters, UnsupportedAdapterError
from inference.engine.padded import run_bucketed
from inference.engine.samplers import resolve
from inference.engine.warmup import WarmupProgress, warm_up, warmup_plan

from .lora_fixture import KOHYA_TEXT_LAYERS, make_kohya_lora, make_tiny_lora
from .test_compiled_shapes import GraphCounter

SIZE = 64


@pytest.fixture(scope="module")
def base(cache_dir):
    return ensure_builtin("builtin:tiny", cache_dir)


@pytest.fixture(scope="module")
def adapters(base, tmp_path_factory):
    """"ink": UNet layers only; "glow": UNet and text encoder layers."""
    folder = tmp_path_factory.mktemp("loras")
    return {
        "ink": make_tiny_lora(base, folder / "ink", seed=1),
        "glow": make_tiny_lora(base, folder / "glow", seed=2, text_encoder=True),
    }


def _pipeline(base, fuse_qkv=False):
    from diffusers import StableDiffusionPipeline

    pipeline = StableDiffusionPipeline.from_pretrained(str(base))
    pipeline.set_progress_bar_config(disable=True)
    if fuse_qkv:
        pipeline.fuse_qkv_projections()
    return pipeline


def _image(pipeline, prompt="a lighthouse"):
    result = pipeline(
        prompt, num_inference_steps=3, width=SIZE, height=SIZE, output_type="np",
        generator=torch.Generator().manual_seed(7),
    )
    return np.asarray(result.images[0])


def _reference(base, adapters, active):
    """diffusers' unmerged adapters: what a merged one must reproduce."""
    pipeline = _pipeline(base)
    for name, folder in adapters.items():
        pipeline.load_lora_weights(str(folder), adapter_name=name)
    pipeline.set_adapters([name for name, _ in active], [weight for _, weight in active])
    return _image(pipeline)


def _merged(base, adapters, fuse_qkv=False):
    pipeline = _pipeline(base, fuse_qkv)
    specs = [LoraSpec(source=str(folder), name=name) for name, folder in adapters.items()]
    loaded = load_adapters(pipeline, specs, base)
    return pipeline, loaded, take_unet_adapters(pipeline, loaded)


def _state(module):
    return {name: tensor.clone() for name, tensor in module.state_dict().items()}


@pytest.mark.parametrize("fuse_qkv", [False, True], ids=["separate-qkv", "fused-qkv"])
def test_a_merged_adapter_makes_peft_s_image_and_comes_off_bit_for_bit(base, adapters, fuse_qkv):
    pipeline, loaded, unet_adapters = _merged(base, {"ink": adapters["ink"]}, fuse_qkv)
    assert not any(isinstance(module, BaseTunerLayer) for module in pipeline.unet.modules())
    if fuse_qkv:  # the attention runs the fused projections, so their rows are the targets
        assert any(getattr(module, "fused_projections", False) for module in pipeline.unet.modules())
    plain_weights, plain = _state(pipeline.unet), _image(pipeline)

    activate(pipeline, (("ink", 0.7, 0.7),), loaded, unet_adapters)
    merged = _image(pipeline)
    reference = _reference(base, {"ink": adapters["ink"]}, [("ink", 0.7)])
    assert np.abs(merged - reference).max() < 1e-4
    assert np.abs(merged - plain).max() > 0.05  # the adapter does change the image

    activate(pipeline, (), loaded, unet_adapters)
    after = _state(pipeline.unet)
    assert all(torch.equal(plain_weights[name], after[name]) for name in plain_weights)
    assert np.array_equal(_image(pipeline), plain)


def test_a_kohya_lora_with_a_locon_convolution_matches_peft(base, tmp_path):
    """The file format AUTOMATIC1111 users have, converted by diffusers; with fused
    projections and channels_last weights, as `auto` runs on CUDA."""
    kohya = {"kohya": make_kohya_lora(base, tmp_path / "kohya" / "style.safetensors")}
    pipeline = _pipeline(base, fuse_qkv=True)
    pipeline.unet.to(memory_format=torch.channels_last)
    specs = [LoraSpec(source=str(kohya["kohya"]), name="kohya")]
    loaded = load_adapters(pipeline, specs, base)
    unet_adapters = take_unet_adapters(pipeline, loaded)
    convolution = pipeline.unet.down_blocks[0].resnets[0].conv1.weight
    assert unet_adapters.weight_count > 20
    text_layers = [module for module in pipeline.text_encoder.modules() if isinstance(module, BaseTunerLayer)]
    assert len(text_layers) == pipeline.text_encoder.config.num_hidden_layers * len(KOHYA_TEXT_LAYERS)
    plain = _image(pipeline)
    before = convolution.clone()
    activate(pipeline, (("kohya", 0.6, 0.6),), loaded, unet_adapters)
    assert not torch.equal(convolution, before)  # the LoCon layer is merged too
    merged = _image(pipeline)
    reference = _pipeline(base)
    reference.load_lora_weights(str(kohya["kohya"].parent), weight_name=kohya["kohya"].name, adapter_name="kohya")
    reference.set_adapters(["kohya"], [0.6])
    assert np.abs(merged - _image(reference)).max() < 1e-4 < np.abs(merged - plain).max()
    activate(pipeline, (), loaded, unet_adapters)
    assert torch.equal(convolution, before) and np.array_equal(_image(pipeline), plain)


def test_several_adapters_and_text_encoder_layers_match_peft(base, adapters):
    pipeline, loaded, unet_adapters = _merged(base, adapters)
    assert unet_adapters.names == {"ink", "glow"}
    # The text encoder is not compiled: its adapter layers stay, switched per batch.
    assert any(isinstance(module, BaseTunerLayer) for module in pipeline.text_encoder.modules())
    plain = _image(pipeline)
    for active in ((("glow", 1.0),), (("glow", 0.5), ("ink", 0.8))):
        activate(pipeline, tuple((name, weight, weight) for name, weight in active), loaded, unet_adapters)
        assert np.abs(_image(pipeline) - _reference(base, adapters, list(active))).max() < 1e-4, active
    # AUTOMATIC1111's <lora:glow:0.9:0.3>: the text encoder and the UNet weighed apart.
    activate(pipeline, (("glow", 0.9, 0.3),), loaded, unet_adapters)
    assert np.abs(_image(pipeline) - _reference(base, adapters, [("glow", {"text_encoder": 0.9, "unet": 0.3})])).max() < 1e-4
    activate(pipeline, (("glow", 0.0, 0.0),), loaded, unet_adapters)  # weight 0: as if absent
    assert unet_adapters.active == ()
    activate(pipeline, (), loaded, unet_adapters)
    assert np.array_equal(_image(pipeline), plain)


def test_a_switch_that_fails_midway_is_redone_in_full(base, adapters):
    """Out of memory in the middle of a merge leaves some weights merged: the next batch
    must not trust the set it asks for to be in place, even the one that was."""
    pipeline, loaded, unet_adapters = _merged(base, adapters)
    activate(pipeline, (("ink", 0.7, 0.7),), loaded, unet_adapters)
    ink = _state(pipeline.unet)
    layers = [layer for target in unet_adapters._targets for name, layer in target.sources if name == "glow"]
    failing = layers[len(layers) // 2]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(failing, "get_delta_weight", lambda name: (_ for _ in ()).throw(torch.OutOfMemoryError()))
        with pytest.raises(torch.OutOfMemoryError):
            activate(pipeline, (("glow", 1.0, 1.0),), loaded, unet_adapters)
    assert unet_adapters.active is None
    activate(pipeline, (("ink", 0.7, 0.7),), loaded, unet_adapters)
    after = _state(pipeline.unet)
    assert all(torch.equal(ink[name], after[name]) for name in ink)


def test_an_adapter_that_cannot_be_merged_is_named_and_left_out(base, adapters, caplog):
    from peft import LoraConfig

    pipeline = _pipeline(base)
    loaded = load_adapters(pipeline, [LoraSpec(source=str(adapters["ink"]), name="ink")], base)
    pipeline.unet.add_adapter(LoraConfig(r=4, use_dora=True, target_modules=["to_q"]), adapter_name="weighted")
    with pytest.raises(UnsupportedAdapterError, match=r"LoRA 'weighted': layer .*to_q \(DoraLinearVariant\)"):
        UnetAdapters.take_from(pipeline.unet)

    loaded["weighted"] = LoraSpec(source="local", name="weighted")
    with caplog.at_level(logging.WARNING, logger="inference.engine.lora"):
        unet_adapters = take_unet_adapters(pipeline, loaded)
    assert sorted(loaded) == ["ink"] and unet_adapters.names == {"ink"}
    assert any("LoRA weighted is not loaded" in record.getMessage() for record in caplog.records)


def test_only_the_adapters_that_loaded_are_kept(base, adapters):
    """An adapter whose loading failed halfway may have left layers in the UNet: they are
    taken out with the others, and nothing of theirs is kept or merged."""
    from peft import LoraConfig

    pipeline = _pipeline(base)
    load_adapters(pipeline, [LoraSpec(source=str(adapters["ink"]), name="ink")], base)
    pipeline.unet.add_adapter(LoraConfig(r=4, use_dora=True, target_modules=["to_q"]), adapter_name="halfway")
    unet_adapters = UnetAdapters.take_from(pipeline.unet, only={"ink"})
    assert unet_adapters.names == {"ink"}
    assert not any(isinstance(module, BaseTunerLayer) for module in pipeline.unet.modules())
    assert all(name == "ink" for target in unet_adapters._targets for name, _ in target.sources)


def test_an_adapter_that_does_not_fit_leaves_nothing_in_the_unet(cache_dir, adapters, caplog):
    """diffusers leaves the layers of a load that failed (an SD 1.5 adapter on SDXL) in
    the UNet; the server's load takes them out with the rest."""
    from inference.engine.loading import choose_device
    from inference.engine.registry import ModelRef, ModelRegistry

    registry = ModelRegistry([ModelRef("builtin:tiny-sdxl")], cache_dir=cache_dir, device=choose_device("cpu"),
                             loras=[LoraSpec(source=str(adapters["ink"]), name="ink")])
    with caplog.at_level(logging.WARNING, logger="inference.engine.registry"):
        model = registry.get("builtin:tiny-sdxl")
    assert model.loras == {} and model.unet_adapters.names == frozenset()
    assert not any(isinstance(module, BaseTunerLayer) for module in model.text2img.unet.modules())
    assert "LoRA ink does not fit builtin:tiny-sdxl" in caplog.text


def _key(adapters=()):
    return BatchKey(
        model="builtin:tiny", kind="txt2img", width=SIZE, height=SIZE, steps=2, sampler=resolve("Euler a", None),
        cfg_scale=7.0, adapters=adapters,
    )


def _tasks(count):
    return [ImageTask(prompt=f"a harbour {i}", negative_prompt="", seed=30 + i) for i in range(count)]


def test_a_compiled_unet_runs_adapters_through_its_warmed_graphs(cache_dir, adapters):
    """Before merging, every adapter set compiled a graph of its own, and after warm-up a
    batch with adapters ran eager. Fused projections on, as `auto` has them on CUDA."""
    from inference.engine.loading import choose_device, load_model

    torch._dynamo.reset()
    counter = GraphCounter()
    config = dataclasses.replace(choose_fast_path("max", "cpu", max_batch_size=2), inductor=(), fuse_qkv=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch, "compile", counter)
        model = load_model("builtin:tiny", cache_dir=cache_dir, device=choose_device("cpu"), fast_path=config)
    model.loras = load_adapters(model.text2img, [LoraSpec(source=str(adapters["glow"]), name="glow")], cache_dir)
    model.unet_adapters = take_unet_adapters(model.text2img, model.loras)
    plan = warmup_plan([(SIZE, SIZE)], model.fast_path.buckets)
    warm_up(lambda key, tasks: run_bucketed(model, key, tasks), model.name, plan, WarmupProgress(), model.compiled_shapes)
    warmed = counter.graphs()
    plain = [image.tobytes() for image in run_bucketed(model, _key(), _tasks(2))]

    styled = [image.tobytes() for image in run_bucketed(model, _key((("glow", 0.9, 0.9),)), _tasks(2))]
    reweighted = [image.tobytes() for image in run_bucketed(model, _key((("glow", 0.4, 0.4),)), _tasks(2))]
    assert counter.graphs() == warmed  # no adapter set, no weight compiled anything
    assert model.compiled_shapes.eager_calls == {}  # and every call ran compiled code
    assert len({styled[0], reweighted[0], plain[0]}) == 3
    assert [image.tobytes() for image in run_bucketed(model, _key(), _tasks(2))] == plain

    # The compiled graphs read the merged weights: the eager UNet makes the same bits.
    ungate(model.text2img.unet)
    ungate(model.text2img.vae.decoder)
    assert [image.tobytes() for image in run_bucketed(model, _key((("glow", 0.9, 0.9),)), _tasks(2))] == styled


def test_an_sdxl_adapter_with_second_text_encoder_layers_matches_peft(cache_dir, tmp_path):
    from diffusers import StableDiffusionXLPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    base = ensure_builtin("builtin:tiny-sdxl", cache_dir)
    source = StableDiffusionXLPipeline.from_pretrained(str(base))
    source.unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian", target_modules=["to_q", "to_v"]))
    source.text_encoder_2.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian",
                                                 target_modules=["q_proj", "v_proj"]))
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for module in (source.unet, source.text_encoder_2):
            for name, parameter in module.named_parameters():
                if "lora_B" in name:
                    parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    StableDiffusionXLPipeline.save_lora_weights(
        str(tmp_path / "xl"), unet_lora_layers=get_peft_model_state_dict(source.unet),
        text_encoder_2_lora_layers=get_peft_model_state_dict(source.text_encoder_2), safe_serialization=True,
    )

    def pipeline():
        loaded = StableDiffusionXLPipeline.from_pretrained(str(base))
        loaded.set_progress_bar_config(disable=True)
        return loaded

    merged = pipeline()
    loaded = load_adapters(merged, [LoraSpec(source=str(tmp_path / "xl"), name="xl")], cache_dir)
    unet_adapters = take_unet_adapters(merged, loaded)
    assert unet_adapters.names == {"xl"}
    plain = _image(merged)
    activate(merged, (("xl", 0.9, 0.9),), loaded, unet_adapters)
    styled = _image(merged)
    reference = pipeline()
    reference.load_lora_weights(str(tmp_path / "xl"), adapter_name="xl")
    reference.set_adapters(["xl"], [0.9])
    assert np.abs(styled - _image(reference)).max() < 1e-4 < np.abs(styled - plain).max()
    activate(merged, (), loaded, unet_adapters)
    assert np.array_equal(_image(merged), plain)
