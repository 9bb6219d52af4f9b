"""fmtlbench: a benchmark framework for federated multi-task learning on dense prediction.

Only light modules are imported here so that ``fmtlbench --help`` stays fast; torch, timm and
mlflow are imported inside the functions that need them.
"""

import pluggy

__version__ = "0.1.0"

#: Decorator with which plugins mark their ``register_*`` hook implementations.
hookimpl = pluggy.HookimplMarker("fmtlbench")

__all__ = ["__version__", "hookimpl"]
