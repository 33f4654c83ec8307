"""AUTOMATIC1111 sampler and schedule-type names mapped to diffusers schedulers.

A1111 splits what diffusers calls a scheduler into a *sampler* (the solver: "Euler a",
"DPM++ 2M", ...) and a *schedule type* (the sigma spacing: "karras", "exponential", ...).
Older A1111 clients fold the schedule into the sampler name ("DPM++ 2M Karras"); both
spellings are accepted. Every scheduler is built `from_config` of the loaded model's own
scheduler, so the model's training schedule (betas, prediction type, spacing) is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_SAMPLER = "Euler a"
AUTOMATIC = "automatic"


@dataclass(frozen=True)
class Sampler:
    name: str
    scheduler_class: str
    options: dict[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()


SAMPLERS: tuple[Sampler, ...] = (
    Sampler("DPM++ 2M", "DPMSolverMultistepScheduler", aliases=("k_dpmpp_2m",)),
    Sampler("DPM++ SDE", "DPMSolverSinglestepScheduler", aliases=("k_dpmpp_sde",)),
    Sampler(
        "DPM++ 2M SDE",
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++"},
        aliases=("k_dpmpp_2m_sde",),
    ),
    Sampler("Euler a", "EulerAncestralDiscreteScheduler", aliases=("k_euler_a", "k_euler_ancestral")),
    Sampler("Euler", "EulerDiscreteScheduler", aliases=("k_euler",)),
    Sampler("LMS", "LMSDiscreteScheduler", aliases=("k_lms",)),
    Sampler("Heun", "HeunDiscreteScheduler", aliases=("k_heun",)),
    Sampler("DPM2", "KDPM2DiscreteScheduler", aliases=("k_dpm_2",)),
    Sampler("DPM2 a", "KDPM2AncestralDiscreteScheduler", aliases=("k_dpm_2_a",)),
    Sampler("DDIM", "DDIMScheduler", aliases=("ddim",)),
    # A1111's PLMS: the linear multistep part of PNDM alone, as SD 1.x ships it. With the
    # Runge-Kutta warm-up (diffusers' default) it needs at least 4 steps and runs ~3x more.
    Sampler("PNDM", "PNDMScheduler", {"skip_prk_steps": True}, aliases=("PLMS", "plms", "pndm")),
    Sampler("UniPC", "UniPCMultistepScheduler", aliases=("unipc",)),
    Sampler("DEIS", "DEISMultistepScheduler", aliases=("deis",)),
    Sampler("LCM", "LCMScheduler", aliases=("lcm",)),
)


@dataclass(frozen=True)
class Schedule:
    name: str
    label: str
    # diffusers config overrides; a schedule is offered with a sampler only if the
    # sampler's scheduler class accepts every key.
    options: dict[str, Any] = field(default_factory=dict)


SCHEDULES: tuple[Schedule, ...] = (
    Schedule(AUTOMATIC, "Automatic"),
    Schedule("uniform", "Uniform", {"timestep_spacing": "linspace"}),
    Schedule("karras", "Karras", {"use_karras_sigmas": True}),
    Schedule("exponential", "Exponential", {"use_exponential_sigmas": True}),
    Schedule("beta", "Beta", {"use_beta_sigmas": True}),
    Schedule("sgm_uniform", "SGM Uniform", {"timestep_spacing": "trailing"}),
)

# Legacy A1111 names that carry their schedule in the sampler name.
_SUFFIXES = {" Karras": "karras", " Exponential": "exponential"}

_BY_NAME = {s.name.lower(): s for s in SAMPLERS} | {a.lower(): s for s in SAMPLERS for a in s.aliases}
_SCHEDULE_BY_NAME = {s.name: s for s in SCHEDULES} | {s.label.lower(): s for s in SCHEDULES}


class UnknownSamplerError(ValueError):
    """Raised with a message naming the field and the allowed values."""

    def __init__(self, field_name: str, message: str):
        super().__init__(message)
        self.field = field_name


@dataclass(frozen=True)
class SamplerChoice:
    """A resolved (sampler, schedule) pair; hashable, so it is part of the batch key."""

    sampler: str
    schedule: str


def sampler_names() -> list[str]:
    return [s.name for s in SAMPLERS]


def resolve(sampler_name: str | None, schedule_name: str | None = None) -> SamplerChoice:
    """Turn request fields into a canonical choice, or raise naming the bad field."""
    raw = (sampler_name or DEFAULT_SAMPLER).strip()
    schedule = (schedule_name or AUTOMATIC).strip()
    for suffix, implied in _SUFFIXES.items():
        if raw.endswith(suffix) and raw.lower() not in _BY_NAME:
            raw = raw[: -len(suffix)]
            if schedule.lower() == AUTOMATIC:
                schedule = implied
    sampler = _BY_NAME.get(raw.lower())
    if sampler is None:
        raise UnknownSamplerError(
            "sampler_name", f"unknown sampler {sampler_name!r}; allowed: {', '.join(sampler_names())}"
        )
    entry = _SCHEDULE_BY_NAME.get(schedule) or _SCHEDULE_BY_NAME.get(schedule.lower())
    if entry is None:
        allowed = ", ".join(s.name for s in SCHEDULES)
        raise UnknownSamplerError("scheduler", f"unknown scheduler {schedule_name!r}; allowed: {allowed}")
    if entry.name not in supported_schedules(sampler.name):
        raise UnknownSamplerError(
            "scheduler",
            f"scheduler {entry.name!r} is not available with sampler {sampler.name!r}; "
            f"allowed: {', '.join(supported_schedules(sampler.name))}",
        )
    return SamplerChoice(sampler.name, entry.name)


def _scheduler_class(name: str):
    import diffusers

    return getattr(diffusers, name)


def supported_schedules(sampler_name: str) -> list[str]:
    sampler = _BY_NAME[sampler_name.lower()]
    accepted = _init_parameters(sampler.scheduler_class)
    return [s.name for s in SCHEDULES if all(key in accepted for key in s.options)]


def _init_parameters(class_name: str) -> frozenset[str]:
    import inspect

    return frozenset(inspect.signature(_scheduler_class(class_name).__init__).parameters)


def build_scheduler(choice: SamplerChoice, base_config: dict[str, Any]):
    """A fresh scheduler for `choice`, derived from the model's own scheduler config."""
    sampler = _BY_NAME[choice.sampler.lower()]
    schedule = _SCHEDULE_BY_NAME[choice.schedule]
    cls = _scheduler_class(sampler.scheduler_class)
    return cls.from_config(base_config, **sampler.options, **schedule.options)
