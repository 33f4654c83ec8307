"""When did this process really start?

A module-level `time.monotonic()` is taken after the interpreter booted and after every
import before it, which hides part of a cold start. Linux records each process's start in
/proc/self/stat (clock ticks since boot, the same clock as /proc/uptime), so the process's
true age can be read at any moment and turned into a point on the monotonic clock.
"""

from __future__ import annotations

import os
import time


def process_age_seconds() -> float | None:
    """Seconds since this process was spawned (exec'd), or None where /proc is missing."""
    try:
        with open("/proc/self/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        with open("/proc/uptime", "rb") as uptime:
            seconds_since_boot = float(uptime.read().split()[0])
    except (OSError, IndexError, ValueError):
        return None
    # Field 22 of stat is starttime; after the ")" that ends the command name, field 3
    # (the state) is index 0, so starttime is index 19.
    started_after_boot = int(fields[19]) / os.sysconf("SC_CLK_TCK")
    return max(0.0, seconds_since_boot - started_after_boot)


def process_started_monotonic() -> float:
    """The process's spawn time on the `time.monotonic()` clock (10 ms resolution)."""
    now = time.monotonic()
    age = process_age_seconds()
    return now - age if age is not None else now
