"""What `serve` loads, reported as JSON: `python -m tests.inference.offline_load SERVE_ARGS...`

The arguments are `serve`'s and go through its own parser (flags and SD_* variables), its
device/dtype decision and `load_model`, the function the server loads every checkpoint
with, then each `--upscaler` through `Upscalers.network`, the server's first-use load.
One thing differs, for machines without a GPU: a CUDA decision (float16) is kept but the
modules are placed on the CPU. Prints, per model, the pipeline class, the weights'
dtype and each loaded module's tensor sums (tests/inference/variant_fixture.py); per
upscaler (under "upscalers"), its network's tensor sums; per `--lora` (under "loras"), the
sum of its adapter's weights once `load_adapters` (the server's LoRA load) put it on the
first model's pipeline.
"""

from __future__ import annotations

import dataclasses
import json
import sys

from inference.__main__ import parse
from inference.engine.loading import choose_device, load_model
from inference.engine.lora import LoraSpec, load_adapters
from inference.engine.registry import model_refs
from inference.engine.upscalers import Upscalers, UpscalerSpec

from .variant_fixture import LOADED_COMPONENTS, tensor_sums

if __name__ == "__main__":
    import torch

    _, settings = parse(["serve", *sys.argv[1:]])
    device = choose_device(settings.device, settings.dtype)
    if device.device == "cuda" and not torch.cuda.is_available():
        device = dataclasses.replace(device, device="cpu", channels_last=False)
    report = {}
    pipelines = []
    for ref in model_refs(settings.model, settings.revision):
        model = load_model(ref.name, cache_dir=settings.cache_dir, revision=ref.revision, device=device)
        pipeline = model.text2img
        pipelines.append(pipeline)
        report[ref.name] = {
            "pipeline": type(pipeline).__name__,
            "dtype": str(pipeline.unet.dtype),
            "safety_checker": pipeline.safety_checker is not None,
            "modules": {name: tensor_sums(getattr(pipeline, name).state_dict()) for name in LOADED_COMPONENTS},
        }
    adapters = [LoraSpec.parse(text) for text in settings.lora]
    report["loras"] = {}
    if adapters:  # after the modules' sums, which then hold no adapter weights
        load_adapters(pipelines[0], adapters, settings.cache_dir)
        parameters = dict(pipelines[0].unet.named_parameters())
        report["loras"] = {
            spec.name: float(sum(value.double().sum() for key, value in parameters.items() if f".{spec.name}." in key))
            for spec in adapters
        }
    upscalers = Upscalers([UpscalerSpec.parse(text) for text in settings.upscaler],
                          cache_dir=settings.cache_dir, device=device)
    report["upscalers"] = {name: tensor_sums(upscalers.network(name).state_dict()) for name in upscalers.specs}
    print(json.dumps(report))
