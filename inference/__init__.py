"""The Stable Diffusion inference service (FastAPI over diffusers). Never imports pulumi."""
