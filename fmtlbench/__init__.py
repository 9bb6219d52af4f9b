"""fmtlbench: a benchmark framework for federated multi-task learning on dense prediction.

Only light modules are imported here so that ``fmtlbench --help`` stays fast; torch, timm and
mlflow are imported inside the functions that need them.
"""

import os

import pluggy

# Large CPU tensors on transparent huge pages (a PyTorch allocator switch, read once, when torch
# first allocates: so it is set here, before any fmtlbench module imports torch). Client states
# and aggregation outputs are fresh tensors of tens to hundreds of MB every round, and faulting
# them in 4 KiB pages cost about as much as the aggregation arithmetic itself (FedAMP's K
# personalised models at K = 8: 1.15 s -> 0.62 s). An explicit setting of the variable wins.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

__version__ = "0.2.0"

#: Decorator with which plugins mark their ``register_*`` hook implementations.
hookimpl = pluggy.HookimplMarker("fmtlbench")

__all__ = ["__version__", "hookimpl"]
