"""EnergyMeter: offline only, per-lap codecarbon figures, honest about how they are obtained."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from importlib import resources
from pathlib import Path

import pytest

from fmtlbench.config import EnergyConfig
from fmtlbench.energy import EnergyMeter
from fmtlbench.errors import ConfigError


def _carbon_intensity(code: str) -> float:
    """kg CO2e per kWh of ``code``'s grid, read straight from codecarbon's bundled table."""
    path = resources.files("codecarbon") / "data" / "private_infra" / "global_energy_mix.json"
    return json.loads(path.read_text())[code]["carbon_intensity"] / 1000.0


def _busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        x += 1


def _timers() -> set[threading.Thread]:
    """Live ``threading.Timer`` threads (codecarbon's periodic monitor runs on them)."""
    return {t for t in threading.enumerate() if isinstance(t, threading.Timer) and t.is_alive()}


@pytest.fixture
def offline(monkeypatch):
    """Fail loudly if anything opens a non-loopback connection while the meter runs."""
    attempts: list[object] = []
    real_connect = socket.socket.connect

    def connect(self, address):
        host = address[0] if isinstance(address, tuple) else str(address)
        if host not in ("127.0.0.1", "::1", "localhost") and self.family != socket.AF_UNIX:
            attempts.append(address)
            raise OSError(f"network access attempted: {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return attempts


def test_laps_measure_energy_and_country_emissions(offline, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    timers_before = _timers()
    meter = EnergyMeter(EnergyConfig(country_iso_code="FRA"))
    meter.start()
    laps = []
    for _ in range(2):
        started = time.perf_counter()
        _busy(0.4)
        kwh, co2 = meter.lap()
        laps.append((kwh, co2, time.perf_counter() - started))
    meter.stop()
    meter.stop()  # idempotent
    method = meter.method()  # still describes the hardware after stop()
    for kwh, co2, seconds in laps:
        assert kwh > 0 and co2 > 0
        watts = kwh * 3.6e6 / seconds
        assert 0.05 < watts < 5000, watts  # a physically plausible machine
        # emissions are the lap's energy times France's grid intensity, nothing else
        assert co2 / kwh == pytest.approx(_carbon_intensity("FRA"), rel=1e-6)
    assert "offline" in method and "FRA" in method and "France" in method
    assert "CPU:" in method and ("estimated from" in method or "measured by" in method)
    if not Path("/sys/class/powercap/intel-rapl").exists():
        assert "TDP" in method and "estimated" in method
    assert offline == []
    assert list(tmp_path.iterdir()) == []  # no emissions.csv or anything else written
    assert _timers() <= timers_before  # codecarbon's monitoring timer is stopped


def test_codecarbon_settings_cannot_switch_the_network_on(offline, monkeypatch):
    """codecarbon reads CODECARBON_* variables and config files; an API token or an HTTP
    endpoint there would make even the offline tracker call out. The meter pins them off."""
    monkeypatch.setenv("CODECARBON_ELECTRICITYMAPS_API_TOKEN", "token")
    monkeypatch.setenv("CODECARBON_CO2_SIGNAL_API_TOKEN", "token")
    monkeypatch.setenv("CODECARBON_EMISSIONS_ENDPOINT", "http://203.0.113.1/emissions")
    monkeypatch.setenv("CODECARBON_OUTPUT_METHODS", "api")
    meter = EnergyMeter(EnergyConfig(country_iso_code="FRA"))
    meter.start()
    _busy(0.2)
    kwh, co2 = meter.lap()
    meter.stop()
    assert offline == []
    assert co2 / kwh == pytest.approx(_carbon_intensity("FRA"), rel=1e-6)


def test_country_changes_the_intensity_not_the_energy_accounting(offline):
    meter = EnergyMeter(EnergyConfig(country_iso_code="deu"))  # case-insensitive
    meter.start()
    _busy(0.2)
    kwh, co2 = meter.lap()
    meter.stop()
    assert co2 / kwh == pytest.approx(_carbon_intensity("DEU"), rel=1e-6)
    assert _carbon_intensity("DEU") != pytest.approx(_carbon_intensity("FRA"))


def test_unknown_country_is_a_clear_error():
    with pytest.raises(ConfigError, match="energy.country_iso_code.*'XYZ'"):
        EnergyMeter(EnergyConfig(country_iso_code="XYZ"))


def test_disabled_meter_measures_nothing_and_says_so():
    meter = EnergyMeter(EnergyConfig(enabled=False, country_iso_code="XYZ"))
    meter.start()
    kwh, co2 = meter.lap()
    meter.stop()
    assert math.isnan(kwh) and math.isnan(co2)
    assert meter.method() == "not measured (energy.enabled=false)"


def test_lap_before_start_is_not_a_measurement():
    meter = EnergyMeter(EnergyConfig(country_iso_code="USA"))
    assert all(math.isnan(v) for v in meter.lap())
    assert "not yet detected" in meter.method()
