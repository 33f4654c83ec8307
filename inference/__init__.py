"""The Stable Diffusion inference service (FastAPI over diffusers). Never imports pulumi.

MKL's "strict" conditional numerical reproducibility mode makes CPU matrix products give
the same bits for a row whatever the batch around it, which is what lets a batched image
equal the image generated alone (docs/architecture.md, "Per-image generators"). It must be set before MKL loads,
so it is set here, on first import of the package, unless the operator chose a mode.
It costs nothing measurable on the builtin models (bench/batching.py) and does not touch
CUDA kernels.
"""

import os

os.environ.setdefault("MKL_CBWR", "AVX2,STRICT")
