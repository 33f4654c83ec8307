"""inference/Dockerfile, read as text: no Docker daemon here, so `make test` runs hadolint on
it and these checks of what the image must contain for a fast, working start."""

from __future__ import annotations

import re
from pathlib import Path

DOCKERFILE = Path(__file__).resolve().parents[2] / "inference" / "Dockerfile"


def _run_lines() -> list[str]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    return [line for line in text.splitlines() if line.strip().startswith("RUN ")]


def test_the_image_ships_bytecode_for_its_read_only_root_filesystem():
    # Without .pyc files in the image every start compiles torch, transformers and
    # diffusers from source (17.5 s instead of 5.6 s to reach a loaded builtin:tiny).
    pip_installs = [line for line in _run_lines() if re.search(r"\bpip install\b", line)]
    assert pip_installs, "the image installs the requirements with pip"
    assert all("--no-compile" not in line for line in pip_installs)
    assert any(re.search(r"python -m compileall .*\binference\b", line) for line in _run_lines())



def test_the_image_has_a_c_compiler_for_triton():
    # --compile auto (the default on GPUs) compiles with inductor, whose Triton backend
    # builds its CUDA launcher with `cc` at run time: python:slim ships none.
    installs = [line for line in _run_lines() if "apt-get install" in line]
    assert any(re.search(r"\bgcc\b", line) and "libc6-dev" in line for line in installs), installs
