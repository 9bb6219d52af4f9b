"""Per-step cost of the FedProx/FedAMP proximal term, per-entry loop (before) against the fused
``torch._foreach`` operation of ``fmtlbench.maths.squared_distance`` (after).

The model is the real MD ResNet-18 of NYUD-v2 (all tasks) at the demo resolution; the anchors
are its parameters plus a small random offset (what a client holds after a round). Two numbers
per variant: the term alone (forward + backward of ``(mu/2)||theta - anchor||^2``, gradients
accumulating into the parameters as in training) and a whole training step with the term
(forward, a loss over every task, backward). CPU time (``time.process_time``) on ``--threads``
threads, median of ``--repeats``.

    .venv/bin/python benchmarks/proximal.py                  # writes results/proximal.md
    .venv/bin/python benchmarks/proximal.py --repeats 5 --batch 4
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from fmtlbench.maths import squared_distance
from fmtlbench.model import build_model
from fmtlbench.registry import load_registry

HERE = Path(__file__).resolve().parent
RESOLUTION = (64, 80)


def loop_squared_distance(live, anchors) -> torch.Tensor:
    """The term as it was computed before: one small autograd chain per entry."""
    return sum(((live[n] - anchor) ** 2).sum() for n, anchor in anchors.items())


def cpu_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "proximal.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    registry = load_registry()
    torch.manual_seed(0)
    specs = dict(registry.get("dataset", "nyudv2").tasks)
    model = build_model(
        registry.get("backbone", "resnet18")(), registry.get("decoder", "md")(), specs, RESOLUTION
    )
    model.train()
    live = dict(model.named_parameters())
    anchors = {n: p.detach() + 1e-3 * torch.randn_like(p) for n, p in live.items()}
    values = sum(p.numel() for p in live.values())
    image = torch.randn(args.batch, 3, *RESOLUTION)
    mu = 0.001

    def term(fn):
        def step() -> None:
            model.zero_grad(set_to_none=True)
            (0.5 * mu * fn(live, anchors)).backward()

        return step

    def train_step(fn):
        def step() -> None:
            model.zero_grad(set_to_none=True)
            outputs = model(image)
            loss = sum(out.square().mean() for out in outputs.values())
            (loss + 0.5 * mu * fn(live, anchors)).backward()

        return step

    def no_term() -> None:
        model.zero_grad(set_to_none=True)
        outputs = model(image)
        sum(out.square().mean() for out in outputs.values()).backward()

    rows = []
    for label, fn in (
        ("loop (before)", loop_squared_distance),
        ("fused (after)", squared_distance),
    ):
        t_term = cpu_time(term(fn), args.repeats)
        t_step = cpu_time(train_step(fn), max(3, args.repeats // 3))
        rows.append((label, t_term, t_step))
        print(f"{label}: term {t_term * 1e3:.1f} ms, step {t_step * 1e3:.1f} ms", flush=True)
    base = cpu_time(no_term, max(3, args.repeats // 3))
    print(f"step without the term: {base * 1e3:.1f} ms")

    lines = [
        f"# Proximal term per step (MD ResNet-18, NYUD-v2 all tasks, {len(live)} parameter "
        f"tensors, {values / 1e6:.1f} M values, {args.threads} thread(s))",
        "",
        f"CPU time per step, median of {args.repeats} (term) / {max(3, args.repeats // 3)} "
        f"(step) repeats; a step is forward + loss + backward of a batch of {args.batch} at "
        f"{RESOLUTION[0]}x{RESOLUTION[1]}; the same step without the term took "
        f"{base * 1e3:.1f} ms. Written by `python benchmarks/proximal.py`.",
        "",
        "| variant | term (fwd + bwd) | training step with the term | term share of the step |",
        "|---|---|---|---|",
    ]
    for label, t_term, t_step in rows:
        lines.append(
            f"| {label} | {t_term * 1e3:.1f} ms | {t_step * 1e3:.1f} ms | "
            f"{100 * t_term / t_step:.1f}% |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
