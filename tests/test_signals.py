"""SIGTERM behaves like Ctrl-C: an exception the runner's interrupt path catches, exit 143."""

import os
import signal
import subprocess
import sys

import pytest

from fmtlbench import signals


def test_sigterm_raises_terminated_and_second_signal_is_default():
    old = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    try:
        signals.install()
        with pytest.raises(KeyboardInterrupt) as info:
            os.kill(os.getpid(), signal.SIGTERM)
        assert isinstance(info.value, signals.Terminated)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, old[0])
        signal.signal(signal.SIGINT, old[1])


def test_cli_exits_143_on_sigterm():
    code = (
        "import os, signal, sys, click\n"
        "from fmtlbench.cli import FriendlyGroup\n"
        "@click.group(cls=FriendlyGroup)\n"
        "def g(): pass\n"
        "@g.command()\n"
        "def hang():\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    import time; time.sleep(5)\n"
        "g(['hang'])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 143
    assert proc.stderr.strip() == "terminated"
