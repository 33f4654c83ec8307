#!/usr/bin/env bash
# The wheels `python -m bench.gpu` needs on a lent GPU machine beside what it has (torch,
# Triton, numpy, pillow, scipy, huggingface-hub, tokenizers, safetensors, accelerate, peft,
# httpx, prometheus-client): the project's pins of diffusers and transformers (without
# their dependencies, which the machine has) and of the web stack, fastapi-offline
# included (with their small dependencies), for CPython 3.12 on x86-64 (about 24 MB; the
# tracked files add 2 MB to what travels, under its 64 MiB). Run here, in the repository
# root; `.whl/` is ignored through .git/info/exclude and travels with `carry: [".whl"]`.
# Then, on the device, one command:
#
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#       --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit; \
#   PYTHONUNBUFFERED=1 python3 -m bench.gpu --out $OUT/gpu-fast-path.json --server-logs $OUT/servers \
#       2>&1 | tee $OUT/gpu-fast-path.log
#
# (timeout_s 560: the run budgets itself to 470 s; the JSON is rewritten after every row
# and note, so a run killed at the limit still returns what it measured) and commit the
# returned JSON, log and server logs under bench/results/. Versions there: docs/benchmarks.md.
# If the budget made it skip stages (the JSON's notes say which), call again at once, while
# the machine is still warm, with `--stages <the skipped ones> --out $OUT/gpu-fast-path-2.json`
# and timeout_s for what is left of the device time; keep both files.
set -euo pipefail
cd "$(dirname "$0")/.."
exclude="$(git rev-parse --git-path info/exclude)"
grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"
pin() { grep -E "^$1==" requirements/inference.txt | sed 's/ .*//'; }
PY="${PYTHON:-python3}"
# WHEEL_PYTHON / WHEEL_DIR: the same set for another CPython into another folder (a check here,
# on this machine's 3.11, of what the device's 3.12 gets).
dest="${WHEEL_DIR:-.whl}"
platform=(--only-binary=:all: --python-version "${WHEEL_PYTHON:-3.12}" --implementation cp
          --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
          --platform manylinux_2_34_x86_64 --platform manylinux_2_39_x86_64)
rm -rf "$dest" && mkdir -p "$dest"
"$PY" -m pip download -q --no-deps "${platform[@]}" -d "$dest" "$(pin diffusers)" "$(pin transformers)"
# fastapi-offline: the server imports its Swagger UI files at start (inference/api/security.py).
"$PY" -m pip download -q "${platform[@]}" -d "$dest" "$(pin fastapi)" "$(pin fastapi-offline)" "$(pin uvicorn)" \
    "$(pin pydantic)" "$(pin bcrypt)"
ls -1 "$dest"
du -sh "$dest"
