"""The test kit's tiny conv pyramid backbone (``fmtlbench.testing.tiny``) for tests whose
subject is not the encoder (the algorithm contract, resume exactness, the kill matrix), where
ResNet-18's 11 M parameters would cost most of the time.

It is also a plugin module with a ``register_backbones`` hook: tests that run the real CLI in a
subprocess install it the way any third-party plugin is found, by a ``.dist-info`` folder with
an ``fmtlbench`` entry point on the subprocess's path (``plugin_path``).
"""

from __future__ import annotations

from pathlib import Path

from fmtlbench import hookimpl
from fmtlbench.components import Backbone
from fmtlbench.testing.tiny import TinyPyramid

__all__ = ["TinyPyramid", "plugin_path", "register_backbones"]


@hookimpl
def register_backbones() -> list[type[Backbone]]:
    return [TinyPyramid]


def plugin_path(folder: Path) -> str:
    """A ``PYTHONPATH`` under which this module is an installed ``fmtlbench`` plugin: the
    tests folder (the module) and ``folder`` holding its distribution's metadata."""
    info = Path(folder) / "fmtlbench_test_pyramid-0.0.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fmtlbench-test-pyramid\nVersion: 0.0.0\n"
    )
    (info / "entry_points.txt").write_text("[fmtlbench]\ntest-pyramid = pyramid\n")
    return f"{Path(__file__).parent}:{folder}"
