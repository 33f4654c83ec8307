"""Initial noise as AUTOMATIC1111 makes it: variation seeds and seed resize.

An image's noise is drawn from its seed's generator; with a variation seed (`subseed`)
and `subseed_strength` s, it is the spherical interpolation (slerp) of the seed's noise
and the subseed's noise: s = 0 is the seed's image, s = 1 the subseed's. With
`seed_resize_from_w/h`, the seed's noise is drawn at that size and pasted centred into
noise of the real size, so a seed's composition survives a change of size.

The noise is drawn from the same CPU generator the pipeline is then given, in the same
order the pipeline would have drawn it, so an image without a variation is bit-identical
to the pipeline's own draw, and the generator goes on with the ancestral samplers' noise.
"""

from __future__ import annotations

from typing import Any


def slerp(strength: float, low: Any, high: Any) -> Any:
    """A1111's slerp of two noise tensors shaped (C, H, W), along H for each (C, W)."""
    import torch

    low_norm = low / torch.norm(low, dim=1, keepdim=True)
    high_norm = high / torch.norm(high, dim=1, keepdim=True)
    dot = (low_norm * high_norm).sum(1)
    if dot.mean() > 0.9995:  # nearly parallel: sin(omega) ~ 0, interpolate linearly
        return low * (1 - strength) + high * strength
    omega = torch.acos(dot)
    so = torch.sin(omega)
    return (torch.sin((1.0 - strength) * omega) / so).unsqueeze(1) * low + (torch.sin(strength * omega) / so).unsqueeze(1) * high


def needs_custom_noise(task: Any) -> bool:
    return task.subseed_strength > 0 or task.seed_resize_from is not None


def initial_noise(task: Any, generator: Any, shape: tuple[int, int, int], dtype: Any) -> Any:
    """The (1, C, H, W) starting noise of `task`, drawn from `generator` (seeded with the
    task's seed, as the pipeline's would be)."""
    import torch

    noise_shape = shape
    if task.seed_resize_from is not None:
        from_w, from_h = task.seed_resize_from
        noise_shape = (shape[0], from_h // 8, from_w // 8)
    sub = None
    if task.subseed_strength > 0:
        sub_generator = torch.Generator("cpu").manual_seed(task.subseed)
        sub = torch.randn((1, *noise_shape), generator=sub_generator, dtype=dtype)[0]
    noise = torch.randn((1, *noise_shape), generator=generator, dtype=dtype)[0]
    if sub is not None:
        noise = slerp(task.subseed_strength, noise.float(), sub.float()).to(dtype)
    if noise_shape != shape:
        canvas = torch.randn((1, *shape), generator=generator, dtype=dtype)[0]
        dx = (shape[2] - noise_shape[2]) // 2
        dy = (shape[1] - noise_shape[1]) // 2
        w = noise_shape[2] if dx >= 0 else noise_shape[2] + 2 * dx
        h = noise_shape[1] if dy >= 0 else noise_shape[1] + 2 * dy
        tx, ty = max(dx, 0), max(dy, 0)
        sx, sy = max(-dx, 0), max(-dy, 0)
        canvas[:, ty : ty + h, tx : tx + w] = noise[:, sy : sy + h, sx : sx + w]
        noise = canvas
    return noise.unsqueeze(0)
