"""Energy and CO2e of a run, measured round by round with codecarbon's offline tracker.

Only ``OfflineEmissionsTracker`` is used: the online tracker looks up the machine's location
and cloud provider over the network, which a benchmark must never do behind the user's back.
The carbon intensity comes from codecarbon's bundled energy-mix table for the configured
country. Each ``lap()`` closes one codecarbon *task* and opens the next, so the figures of a
round are codecarbon's own energy deltas for exactly that interval (about 1-5 ms per lap).

Where no energy counter exists (no RAPL, no GPU, as on most laptops and CI machines)
codecarbon *estimates* CPU power from CPU load and an assumed TDP and RAM power from its size:
``method()`` spells this out so that every run records how its numbers were obtained.
"""

from __future__ import annotations

import logging
import math
import os
from importlib.metadata import version
from typing import Any

from fmtlbench.config import EnergyConfig
from fmtlbench.errors import ConfigError

#: codecarbon's CPU modes that read a hardware energy counter rather than estimating.
MEASURED_CPU_MODES = frozenset({"intel_rapl", "intel_power_gadget", "windows_emi"})
#: Placeholder laps return when energy is not measured (disabled, or codecarbon failed).
NOT_MEASURED = (math.nan, math.nan)


def known_countries() -> dict[str, str]:
    """ISO 3166 alpha-3 code -> country name of every country codecarbon has an energy mix
    for (read from the package's bundled table; no network)."""
    from codecarbon.input import DataSource

    mix = DataSource().get_global_energy_mix_data()
    return {code: row.get("country_name", code) for code, row in mix.items()}


class EnergyMeter:
    """Energy (kWh) and emissions (kg CO2e) between successive ``lap()`` calls.

    Usage: ``start()`` once before the first round, ``lap()`` after each round (it returns
    that round's figures), ``stop()`` at the end (also after errors: it joins codecarbon's
    monitoring thread). When ``config.enabled`` is false every call is a cheap no-op and laps
    return ``(nan, nan)`` so that nothing pretends to be a measurement.
    """

    def __init__(self, config: EnergyConfig, tracking_mode: str | None = None) -> None:
        self.config = config
        self.enabled = config.enabled
        # "machine" (codecarbon's default) counts the whole machine, which stays right when
        # clients run in other processes (e.g. Ray actors); "process" isolates this process
        # tree. A future ``EnergyConfig.tracking_mode`` field is honoured when present.
        self.tracking_mode = tracking_mode or getattr(config, "tracking_mode", "machine")
        self.country = config.country_iso_code.upper()
        self.country_name = self.country
        self._tracker: Any = None
        self._running = False
        self._failure: str | None = None
        self._devices: list[str] = []
        if self.enabled:
            countries = known_countries()
            if self.country not in countries:
                raise ConfigError(
                    f"energy.country_iso_code: codecarbon has no energy mix for "
                    f"{config.country_iso_code!r}; use an ISO 3166 alpha-3 code such as "
                    "USA, FRA, DEU or CHN (or set energy.enabled=false)"
                )
            self.country_name = countries[self.country]

    def start(self) -> None:
        """Detect the hardware and open the first measurement interval (~1-2 s, once)."""
        if not self.enabled or self._running:
            return
        os.environ.setdefault("CODECARBON_LOG_LEVEL", "error")
        # its configuration messages are logged before log_level applies: quiet the logger
        logging.getLogger("codecarbon").setLevel(logging.ERROR)
        from codecarbon import OfflineEmissionsTracker

        self._tracker = OfflineEmissionsTracker(
            country_iso_code=self.country,
            output_methods=[],  # nothing written to disk, nothing sent anywhere
            # Explicit values beat codecarbon's config files and CODECARBON_* variables,
            # which could otherwise switch on an HTTP endpoint or the Electricity Maps API
            # (an empty token, not None: None falls back to the legacy config key).
            emissions_endpoint=None,
            electricitymaps_api_token="",
            cloud_provider=None,
            cloud_region=None,
            force_carbon_intensity_g_co2e_kwh=None,
            log_level="error",
            measure_power_secs=3600,  # laps measure; no periodic full measurement needed
            tracking_mode=self.tracking_mode,
            project_name="fmtlbench",
        )
        try:
            self._tracker.start_task("lap")
        except Exception as exc:  # codecarbon failing must not kill a training run
            self._fail(exc)
            return
        self._running = True
        self._devices = self._hardware_lines()  # kept for method() after stop()

    def lap(self) -> tuple[float, float]:
        """(kWh, kg CO2e) consumed since ``start()`` or the previous ``lap()``."""
        if not self._running:
            return NOT_MEASURED
        try:
            data = self._tracker.stop_task()
            self._tracker.start_task("lap")
        except Exception as exc:
            self._fail(exc)
            return NOT_MEASURED
        if data is None:
            self._fail(RuntimeError("codecarbon returned no measurement for the interval"))
            return NOT_MEASURED
        return float(data.energy_consumed), float(data.emissions)

    def stop(self) -> None:
        """End measuring and release codecarbon's threads; safe to call more than once."""
        if self._tracker is None:
            return
        tracker, self._tracker, self._running = self._tracker, None, False
        try:
            tracker.stop_task()
        finally:
            tracker.stop()

    def _fail(self, exc: BaseException) -> None:
        """Remember why measuring stopped (``method()`` reports it) and stop cleanly."""
        self._failure = f"{type(exc).__name__}: {exc}"
        self._running = False
        try:
            self.stop()
        except Exception:
            self._tracker = None

    def method(self) -> str:
        """One line saying how energy and CO2e are obtained, to record with the run."""
        if not self.enabled:
            return "not measured (energy.enabled=false)"
        parts = [f"codecarbon {version('codecarbon')} offline tracker"]
        parts.extend(self._devices or ["hardware not yet detected (call start() first)"])
        parts.append(f"tracking_mode={self.tracking_mode}")
        parts.append(f"carbon intensity: {self.country_name} ({self.country}) energy mix")
        if self._failure:
            parts.append(f"measurement stopped after an error ({self._failure})")
        return "; ".join(parts)

    def _hardware_lines(self) -> list[str]:
        """How each detected device's power is obtained. Reads codecarbon's hardware
        objects, whose attributes are not a public API, hence the defensive ``getattr``."""
        hardware = getattr(self._tracker, "_hardware", None) or []
        lines = []
        for device in hardware:
            kind = type(device).__name__
            mode = getattr(device, "_mode", None)
            if kind == "CPU":
                tdp = getattr(device, "_tdp", None)
                model = getattr(device, "_model", "unknown CPU")
                if mode in MEASURED_CPU_MODES:
                    lines.append(f"CPU: measured by {mode} ({model})")
                else:
                    lines.append(
                        f"CPU: estimated from {mode or 'a constant'} with TDP {tdp} W assumed "
                        f"({model}; no RAPL counter)"
                    )
            elif kind == "RAM":
                lines.append("RAM: estimated from memory size")
            elif kind == "GPU":
                lines.append("GPU: measured by the vendor's power counter")
            else:  # Apple silicon, Raspberry Pi: codecarbon's device-specific method
                lines.append(f"{device}: codecarbon's device-specific method")
        if not any(line.startswith("GPU") for line in lines):
            lines.append("GPU: none detected")
        pue = getattr(self._tracker, "_pue", 1.0)
        if pue != 1.0:
            lines.append(f"PUE {pue} (from codecarbon's configuration)")
        return lines
