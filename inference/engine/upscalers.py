"""Image upscalers, by A1111's names: resampling filters that need no weights, and learned
ESRGAN-family networks loaded like any model.

`--upscaler REPO_OR_DIR[@REVISION][:NAME]` (repeatable; env SD_UPSCALER) offers a network under
NAME (default: the last path component). The source is a Hugging Face repo (optionally pinned
to a REVISION: a branch, tag or commit sha) or a local folder
holding one `.safetensors` or `.pth` file of an RRDBNet in BasicSR's key layout
(`conv_first`, `body.N.rdb1.conv1`, ... as Real-ESRGAN and most ESRGAN releases publish
it); its width, depth and scale (x1, x2, x4) are read from the weights. `builtin:tiny-upscaler`
is a x4 network of that shape with random weights, built into the cache like the builtin
pipelines, for tests and `make run`. Learned upscalers are loaded on first use, on the
generation worker (they use the same device), and kept; their weight file is fetched by
`fetch_upscaler`, which the init container's `download` calls too, so that first use reads
the prefetched file and needs no Hub.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from .hub import looks_local, split_revision

log = logging.getLogger(__name__)

# A1111's resampling upscalers. "None" resizes with Lanczos to the target size, as
# A1111's images.resize_image does after an upscaler that changes nothing.
RESAMPLING: dict[str, int] = {
    "None": Image.Resampling.LANCZOS,
    "Lanczos": Image.Resampling.LANCZOS,
    "Nearest": Image.Resampling.NEAREST,
    "Bicubic": Image.Resampling.BICUBIC,
    "Bilinear": Image.Resampling.BILINEAR,
}
BUILTIN_UPSCALER = "builtin:tiny-upscaler"
_WEIGHT_SUFFIXES = (".safetensors", ".pth")


class UpscalerSpecError(ValueError):
    pass


class UnknownUpscalerError(ValueError):
    def __init__(self, name: str, available: list[str]):
        super().__init__(f"unknown upscaler {name!r}; available: {', '.join(available)}")
        self.name = name


@dataclass(frozen=True)
class UpscalerSpec:
    source: str
    name: str
    revision: str | None = None  # a Hub repo's branch, tag or commit sha; None: its default branch

    @classmethod
    def parse(cls, text: str) -> UpscalerSpec:
        """`REPO_OR_DIR[@REVISION][:NAME]` (`builtin:tiny-upscaler[:NAME]` for the builtin); a repo id,
        path or git revision never contains a colon here."""
        text = text.strip()
        entry = text
        prefix = ""
        if text.startswith("builtin:"):
            prefix, text = "builtin:", text[len("builtin:") :]
        parts = text.split(":")
        if not parts[0]:
            raise UpscalerSpecError(f"--upscaler {entry!r}: the upscaler source is empty")
        if len(parts) > 2:
            raise UpscalerSpecError(f"--upscaler {entry!r}: expected REPO_OR_DIR[@REVISION][:NAME]")
        if prefix:
            if "@" in parts[0]:
                raise UpscalerSpecError(f"--upscaler {entry!r}: {BUILTIN_UPSCALER} is built here and takes no revision")
            location, revision = parts[0], None
        else:
            try:
                location, revision = split_revision(parts[0])
            except ValueError as error:
                raise UpscalerSpecError(f"--upscaler {entry!r}: {error}") from None
        source = prefix + location
        if prefix and source != BUILTIN_UPSCALER:
            raise UpscalerSpecError(f"--upscaler {source!r}: the builtin upscaler is {BUILTIN_UPSCALER}")
        name = (parts[1] if len(parts) == 2 else "") or Path(location.rstrip("/")).name
        if name in RESAMPLING or not re.fullmatch(r"[\w .+\-()]+", name):
            raise UpscalerSpecError(f"--upscaler {entry!r}: upscaler name {name!r} is reserved or has odd characters")
        return cls(source=source, name=name, revision=revision)

    @property
    def pinned_source(self) -> str:
        """`REPO[@REVISION]`, as given (for logs and listings)."""
        return f"{self.source}@{self.revision}" if self.revision else self.source


# -- the network ------------------------------------------------------------------------


def _rrdbnet_class():
    import torch
    from torch import nn

    class ResidualDenseBlock(nn.Module):
        def __init__(self, nf: int, gc: int):
            super().__init__()
            self.conv1 = nn.Conv2d(nf, gc, 3, 1, 1)
            self.conv2 = nn.Conv2d(nf + gc, gc, 3, 1, 1)
            self.conv3 = nn.Conv2d(nf + 2 * gc, gc, 3, 1, 1)
            self.conv4 = nn.Conv2d(nf + 3 * gc, gc, 3, 1, 1)
            self.conv5 = nn.Conv2d(nf + 4 * gc, nf, 3, 1, 1)
            self.lrelu = nn.LeakyReLU(0.2, inplace=True)

        def forward(self, x):
            x1 = self.lrelu(self.conv1(x))
            x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
            x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
            x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
            x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
            return x5 * 0.2 + x

    class RRDB(nn.Module):
        def __init__(self, nf: int, gc: int):
            super().__init__()
            self.rdb1 = ResidualDenseBlock(nf, gc)
            self.rdb2 = ResidualDenseBlock(nf, gc)
            self.rdb3 = ResidualDenseBlock(nf, gc)

        def forward(self, x):
            return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x

    class RRDBNet(nn.Module):
        """ESRGAN's generator; x1/x2 models fold pixels into channels first (Real-ESRGAN)."""

        def __init__(self, in_nc: int = 3, out_nc: int = 3, nf: int = 64, nb: int = 23, gc: int = 32, scale: int = 4):
            super().__init__()
            self.scale = scale
            self.conv_first = nn.Conv2d(in_nc * {1: 16, 2: 4, 4: 1}[scale], nf, 3, 1, 1)
            self.body = nn.Sequential(*[RRDB(nf, gc) for _ in range(nb)])
            self.conv_body = nn.Conv2d(nf, nf, 3, 1, 1)
            self.conv_up1 = nn.Conv2d(nf, nf, 3, 1, 1)
            self.conv_up2 = nn.Conv2d(nf, nf, 3, 1, 1)
            self.conv_hr = nn.Conv2d(nf, nf, 3, 1, 1)
            self.conv_last = nn.Conv2d(nf, out_nc, 3, 1, 1)
            self.lrelu = nn.LeakyReLU(0.2, inplace=True)

        def forward(self, x):
            fold = {1: 4, 2: 2, 4: 1}[self.scale]
            if fold > 1:
                x = torch.nn.functional.pixel_unshuffle(x, fold)
            feat = self.conv_first(x)
            feat = feat + self.conv_body(self.body(feat))
            feat = self.lrelu(self.conv_up1(torch.nn.functional.interpolate(feat, scale_factor=2, mode="nearest")))
            feat = self.lrelu(self.conv_up2(torch.nn.functional.interpolate(feat, scale_factor=2, mode="nearest")))
            return self.conv_last(self.lrelu(self.conv_hr(feat)))

    return RRDBNet


def rrdbnet_from_state_dict(state: dict[str, Any], origin: str):
    """An RRDBNet shaped by `state` (BasicSR keys), with `state` loaded."""
    for wrapper in ("params_ema", "params"):
        if isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if "conv_first.weight" not in state or "conv_last.weight" not in state:
        raise UpscalerSpecError(
            f"{origin}: not an ESRGAN (RRDBNet) state dict in BasicSR's layout (conv_first, body.N.rdb1, ...)"
        )
    in_channels = state["conv_first.weight"].shape[1]
    scale = {3: 4, 12: 2, 48: 1}.get(in_channels)
    if scale is None:
        raise UpscalerSpecError(f"{origin}: conv_first takes {in_channels} channels; expected 3, 12 or 48 (x4, x2, x1)")
    blocks = {int(key.split(".")[1]) for key in state if key.startswith("body.")}
    network = _rrdbnet_class()(
        in_nc=3,
        out_nc=state["conv_last.weight"].shape[0],
        nf=state["conv_first.weight"].shape[0],
        nb=len(blocks),
        gc=state["body.0.rdb1.conv1.weight"].shape[0],
        scale=scale,
    )
    network.load_state_dict(state, strict=True)
    return network


def ensure_builtin_upscaler(cache_dir: Path) -> Path:
    """The folder of `builtin:tiny-upscaler`: an x4 RRDBNet, 8 wide, 1 block, random weights."""
    import torch
    from safetensors.torch import save_file

    target = Path(cache_dir) / "builtin" / "tiny-upscaler-v1"
    weights = target / "tiny-upscaler.safetensors"
    if weights.exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(0)  # the same random weights on every machine
    try:
        network = _rrdbnet_class()(nf=8, nb=1, gc=4, scale=4)
    finally:
        torch.random.set_rng_state(generator_state)
    staging = target / ".tiny-upscaler.safetensors.tmp"
    save_file({key: value.contiguous() for key, value in network.state_dict().items()}, str(staging))
    staging.replace(weights)
    return target


def upscaler_weight_name(files: list[str], where: str) -> str:
    """The one weight file of an upscaler folder or repo that is loaded (and so the only one
    fetched): a top-level `.safetensors` file, else a `.pth` one, the first by name."""
    candidates = sorted(name for name in files if "/" not in name and name.endswith(_WEIGHT_SUFFIXES))
    if not candidates:
        raise UpscalerSpecError(f"{where}: no .safetensors or .pth file at its top level")
    safetensors = [name for name in candidates if name.endswith(".safetensors")]
    chosen = (safetensors or candidates)[0]
    if len(candidates) > 1:
        log.info("%s holds %d weight files; using %s", where, len(candidates), chosen)
    return chosen


def weight_file(folder: Path) -> Path:
    return folder / upscaler_weight_name([p.name for p in folder.iterdir() if p.is_file()], str(folder))


def fetch_upscaler(spec: UpscalerSpec, cache_dir: Path) -> Path:
    """The local weight file of `spec`: a local file or folder's as is; for a Hub repo its
    one weight file (`upscaler_weight_name`) at the spec's revision, fetched into the cache.

    The init container's `download` and the server's first use (`Upscalers.network`) both
    call this, so the server reads exactly the prefetched file, with the Hub unreachable too.
    """
    if spec.revision and (spec.source == BUILTIN_UPSCALER or looks_local(spec.source)):
        # parse refuses this; a directory that appeared since would be read unpinned
        raise UpscalerSpecError(f"--upscaler {spec.pinned_source!r}: only a Hub repo takes a revision")
    if spec.source == BUILTIN_UPSCALER:
        return weight_file(ensure_builtin_upscaler(cache_dir))
    local = Path(spec.source).expanduser()
    if local.is_file():
        return local
    if local.is_dir():
        return weight_file(local)
    if local.is_absolute() or spec.source.startswith((".", "~")):  # a path, never a repo id
        raise UpscalerSpecError(f"--upscaler {spec.source!r}: no such file or directory")
    from .hub import fetch_chosen_file

    return fetch_chosen_file(
        spec.source, cache_dir, "upscaler", lambda files: upscaler_weight_name(files, spec.source), revision=spec.revision
    )


def load_network(path: Path):
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    network = rrdbnet_from_state_dict(state, str(path))
    return network.eval()


# -- running ------------------------------------------------------------------------------


class Upscalers:
    """Every upscaler offered, by name; learned ones are loaded on first use."""

    def __init__(self, specs: list[UpscalerSpec], *, cache_dir: Path | None = None, device: Any = None):
        self.specs = {spec.name: spec for spec in specs}
        self.cache_dir = cache_dir  # where learned upscalers are fetched to (needed only with specs)
        self.device = device  # engine.loading.DeviceConfig, or None for the CPU in float32
        self._networks: dict[str, Any] = {}
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        return [*RESAMPLING, *self.specs]

    def scale_of(self, name: str) -> int | None:
        network = self._networks.get(name)
        return getattr(network, "scale", None)

    def check(self, name: str) -> None:
        if name not in RESAMPLING and name not in self.specs:
            raise UnknownUpscalerError(name, self.names)

    def network(self, name: str):
        with self._lock:
            if name not in self._networks:
                if self.cache_dir is None:  # a programming error: Runtime always passes one
                    raise ValueError(f"upscaler {name!r}: learned upscalers need Upscalers(cache_dir=...)")
                path = fetch_upscaler(self.specs[name], Path(self.cache_dir))
                network = load_network(path)
                if self.device is not None:
                    network = network.to(self.device.device, self.device.dtype)
                self._networks[name] = network
                log.info("loaded upscaler %s (x%d) from %s", name, network.scale, path)
            return self._networks[name]

    def upscale(self, image: Image.Image, name: str, width: int, height: int) -> Image.Image:
        """`image` at width x height: a learned network applied until it is at least that
        large (as A1111 repeats its x4 passes), then resized with Lanczos."""
        self.check(name)
        image = image.convert("RGB")
        if name in self.specs:
            network = self.network(name)
            while image.width < width or image.height < height:
                before = image.size
                image = _apply(network, image)
                if image.size == before:  # a x1 network: one pass
                    break
            return image if image.size == (width, height) else image.resize((width, height), Image.Resampling.LANCZOS)
        if image.size == (width, height):
            return image
        return image.resize((width, height), RESAMPLING[name])


def _apply(network: Any, image: Image.Image) -> Image.Image:
    import numpy as np
    import torch

    parameter = next(network.parameters())
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0)
    fold = {1: 4, 2: 2, 4: 1}[network.scale]
    pad_h, pad_w = -image.height % fold, -image.width % fold
    if pad_h or pad_w:
        pixels = torch.nn.functional.pad(pixels, (0, pad_w, 0, pad_h), mode="reflect")
    with torch.inference_mode():
        out = network(pixels.to(parameter.device, parameter.dtype)).float().clamp_(0, 1)
    out = out[:, :, : image.height * network.scale, : image.width * network.scale]
    array = (out[0].permute(1, 2, 0).cpu().numpy() * 255.0).round().astype("uint8")
    return Image.fromarray(array)
