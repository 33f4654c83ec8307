"""Memory figures for `/sdapi/v1/memory`, in A1111's shape: the process's RAM and the
accelerator's, in bytes."""

from __future__ import annotations

import os
from typing import Any


def ram_figures() -> dict[str, Any]:
    try:
        meminfo = {}
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                key, _, rest = line.partition(":")
                meminfo[key] = int(rest.split()[0]) * 1024
        with open("/proc/self/statm", encoding="ascii") as handle:
            resident = int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        return {"free": meminfo.get("MemAvailable", 0), "used": resident, "total": meminfo.get("MemTotal", 0)}
    except (OSError, ValueError, IndexError) as error:
        return {"error": f"{type(error).__name__}: RAM figures unavailable"}


def cuda_figures() -> dict[str, Any]:
    import torch

    if not torch.cuda.is_available():
        return {"error": "CUDA is not available"}
    free, total = torch.cuda.mem_get_info()
    stats = torch.cuda.memory_stats()

    def pair(name: str) -> dict[str, int]:
        return {"current": stats.get(f"{name}.all.current", 0), "peak": stats.get(f"{name}.all.peak", 0)}

    return {
        "system": {"free": free, "used": total - free, "total": total},
        "active": pair("active_bytes"),
        "allocated": pair("allocated_bytes"),
        "reserved": pair("reserved_bytes"),
        "inactive": pair("inactive_split_bytes"),
        "events": {"retries": stats.get("num_alloc_retries", 0), "oom": stats.get("num_ooms", 0)},
    }
