"""Round anatomy at the demo configuration: where the CPU time of an fmtlbench round goes, and
how an fmtlbench round compares with a minimal plain-PyTorch loop doing the same work.

The demo is ``fmtlbench run --scenario iid1 --algo fedavg`` with the default ``cpu`` profile
(4 NYUD-v2 clients on the synthetic twin, MD ResNet-18 from scratch at 64x80, batch 8, one
local epoch). Everything runs in one process on one torch thread; times are CPU times
(``time.process_time``, all threads of the process: codecarbon's and MLflow's included).

1. The engine: ``fmtlbench.runner.execute`` with the run's defaults - a real SQLite MLflow store
   in a temporary folder, codecarbon's offline meter, a checkpoint every round. A reporter
   (the engine's own progress hook) stamps the CPU clock at each round start; a round is the
   time from its start to the next round's start, so it includes its MLflow logging and
   checkpoint. Thin timing wrappers around the real functions (local training, evaluation,
   the data loaders' batches, the aggregation, MLflow logging, checkpoint, energy lap) split
   it into phases; each adds two clock reads per call.
2. The plain loop (``plain_rounds``): the same work without the framework - models, loaders
   and initial state built by ``build_federation`` exactly as the run builds them, the same
   seeds per client and round, AdamW per client and round, the same task losses, the
   float64 weighted FedAvg average, and the same evaluation passes (the global test split
   once - every client holds the same model - and each client's local test split) - but no
   tracking, checkpoint, energy meter, digests, traffic accounting or progress display.

Both run ``--rounds`` rounds from the same seed; their final client states and per-round
losses are compared (they must agree to float rounding), so the ratio compares equal work.
Round 1 (caches, allocator warm-up) is reported but left out of the ratio: the target
(issue 14: fmtlbench / plain <= 1.05) is on the steady rounds 2..R. The plain loop runs before
and after the engine and the two are averaged, so a drift of the machine's load shows up.

    .venv/bin/python benchmarks/anatomy.py              # writes benchmarks/results/anatomy.md
    .venv/bin/python benchmarks/anatomy.py --rounds 3 --out /tmp/anatomy.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

HERE = Path(__file__).resolve().parent
#: Phase buckets that are model compute (their data-loading time is taken out).
COMPUTE = ("train_local", "evaluate")


class Buckets:
    """CPU seconds per phase, accumulated by timing wrappers around real calls."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap(self, owner: Any, name: str, bucket: str) -> None:
        """Replace ``owner.name`` by a wrapper that times the original into ``bucket``."""
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.process_time()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[bucket] += time.process_time() - t0

        setattr(owner, name, timed)

    def wrap_loader_batches(self) -> None:
        """Time every batch a DataLoader yields (sampling, decoding, augmentation, collate)."""
        import torch

        original = torch.utils.data.DataLoader.__iter__
        seconds = self.seconds

        def batches(loader: Any) -> Iterator[Any]:
            it = original(loader)
            while True:
                t0 = time.process_time()
                try:
                    batch = next(it)
                except StopIteration:
                    seconds["data"] += time.process_time() - t0
                    return
                seconds["data"] += time.process_time() - t0
                yield batch

        torch.utils.data.DataLoader.__iter__ = batches  # type: ignore[method-assign]

    def take(self) -> dict[str, float]:
        out = dict(self.seconds)
        self.seconds.clear()
        return out


class RoundClock:
    """The engine's reporter hook: CPU clock and phase buckets at every round start."""

    def __init__(self, buckets: Buckets) -> None:
        self.buckets = buckets
        self.starts: list[float] = []
        self.phases: list[dict[str, float]] = []
        self.losses: list[dict[int, float]] = []

    def message(self, text: str) -> None:
        pass

    def round_started(self, round: int, rounds: int, clients: int) -> None:
        self.starts.append(time.process_time())
        self.phases.append(self.buckets.take())  # the previous round's (empty before round 1)
        self.losses.append({})

    def client_done(self, client: int, losses: dict[str, float]) -> None:
        self.losses[-1][client] = losses["total"]

    def round_finished(self, round: int, metrics: dict[str, float]) -> None:
        pass


def demo_config(work: Path, rounds: int) -> Any:
    """The demo run (default profile, iid1, FedAvg) with ``rounds`` rounds, stores in ``work``."""
    from fmtlbench.config import build_config

    return build_config(
        None,
        [
            {
                "scenario": "iid1",
                "algorithm": {"name": "fedavg"},
                "device": "cpu",
                "training": {"rounds": rounds},
                "tracking": {"uri": f"sqlite:///{work / 'mlflow.db'}", "experiment": "anatomy"},
                "checkpoint_dir": str(work / "ckpt"),
            }
        ],
    )


def engine_rounds(config: Any, buckets: Buckets) -> dict[str, Any]:
    """One fmtlbench run; per-round CPU seconds and phases, final states and losses."""
    from fmtlbench import checkpoint, engine, worker
    from fmtlbench.energy import EnergyMeter
    from fmtlbench.registry import load_registry
    from fmtlbench.runner import execute
    from fmtlbench.tracking import Tracker

    registry = load_registry()
    buckets.wrap(worker, "train_local", "train_local")
    buckets.wrap(engine, "evaluate", "evaluate")
    buckets.wrap(registry.get("algorithm", "fedavg"), "aggregate", "aggregate")
    buckets.wrap(Tracker, "log_metrics", "tracking")
    buckets.wrap(checkpoint, "save", "checkpoint")
    buckets.wrap(EnergyMeter, "lap", "energy")
    clock = RoundClock(buckets)
    outcome = execute(config, reporter=clock, registry=registry)
    end = time.process_time()  # the last round's end includes the run's closing work
    clock.phases.append(buckets.take())
    stamps = [*clock.starts, end]
    return {
        "seconds": [b - a for a, b in zip(stamps, stamps[1:], strict=False)],
        "phases": clock.phases[1:],
        "losses": clock.losses,
        "states": outcome.federation.states,
        "metrics": outcome.final.summary,
    }


def plain_rounds(config: Any, buckets: Buckets) -> dict[str, Any]:
    """The same rounds as a bare PyTorch loop over the run's own models, loaders and seeds."""
    import torch

    from fmtlbench.federation import build_federation, derive_seed
    from fmtlbench.losses import multitask_loss
    from fmtlbench.registry import load_registry
    from fmtlbench.schedule import round_lr

    fed = build_federation(config, load_registry())
    cfg = config.training
    model = next(iter(fed.models.values()))  # iid1: one model structure for all clients
    clients = fed.clients
    specs = clients[0].specs
    tasks = list(specs)
    sizes = [len(c.train.dataset) for c in clients]
    weights = (
        [n / sum(sizes) for n in sizes] if _by_samples(fed) else [1 / len(clients)] * len(clients)
    )
    state = {k: v.clone() for k, v in fed.states[0].items()}
    seconds, losses, phases = [], [], []
    for r in range(1, cfg.rounds + 1):
        t0 = time.process_time()
        lr = round_lr(cfg.lr, r, cfg.rounds, cfg.warmup_rounds)
        states, round_losses = [], {}
        for k, client in enumerate(clients):
            t_train = time.process_time()
            seed = derive_seed(config.seed, r, k)
            torch.manual_seed(seed)
            client.train.generator.manual_seed(seed)
            model.load_state_dict(state)
            model.train()
            optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=cfg.weight_decay)
            total, steps = 0.0, 0
            for _ in range(client.epochs):
                for batch in client.train:
                    preds = model(batch["image"], tasks)
                    loss, _ = multitask_loss(specs, preds, {t: batch[t] for t in tasks})
                    optimiser.zero_grad(set_to_none=True)
                    loss.backward()
                    optimiser.step()
                    total, steps = total + float(loss.detach()), steps + 1
            round_losses[k] = total / steps
            buckets.seconds["train_local"] += time.process_time() - t_train
            states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        t_avg = time.process_time()
        state = {}
        for key, ref in states[0].items():
            mean = torch.zeros(ref.shape, dtype=torch.float64)
            for w, s in zip(weights, states, strict=True):
                mean.add_(s[key], alpha=w)  # accumulated in float64, no float64 copies
            state[key] = (
                mean.to(ref.dtype) if ref.dtype.is_floating_point else mean.round().to(ref.dtype)
            )
        buckets.seconds["aggregate"] += time.process_time() - t_avg
        t_eval = time.process_time()
        model.load_state_dict(state)
        metrics = {"G": _evaluate(model, fed.global_tests[clients[0].dataset.name], specs)}
        metrics["P"] = [_evaluate(model, c.test, specs) for c in clients]
        buckets.seconds["evaluate"] += time.process_time() - t_eval
        seconds.append(time.process_time() - t0)
        losses.append(round_losses)
        phases.append(buckets.take())
    return {"seconds": seconds, "phases": phases, "losses": losses, "state": state}


def _by_samples(fed: Any) -> bool:
    return getattr(fed.algorithm.params, "weighting", "uniform") == "samples"


def _evaluate(model: Any, loader: Any, specs: dict[str, Any]) -> dict[str, dict[str, float]]:
    """One evaluation pass: forward without gradients, the task meters on the CPU."""
    import torch

    from fmtlbench.metrics import make_meter

    model.eval()
    meters = {t: make_meter(spec) for t, spec in specs.items()}
    with torch.no_grad():
        for batch in loader:
            preds = model(batch["image"], list(specs))
            for task, meter in meters.items():
                meter.update(preds[task], batch[task])
    return {t: m.compute() for t, m in meters.items()}


def same_work(engine: dict[str, Any], plain: dict[str, Any]) -> dict[str, float]:
    """Largest differences between the two runs' final states and per-round client losses."""
    state_diff = max(
        float((s[key].double() - plain["state"][key].double()).abs().max())
        for s in engine["states"]
        for key in s
    )
    loss_diff = max(
        abs(e[k] - p[k]) for e, p in zip(engine["losses"], plain["losses"], strict=True) for k in p
    )
    scale = max(float(t.double().abs().max()) for t in plain["state"].values())
    return {"state": state_diff, "state_scale": scale, "loss": loss_diff}


def timed_run(what: Callable[..., dict[str, Any]], config: Any, buckets: Buckets) -> dict:
    print(f"{what.__name__}: {config.training.rounds} rounds ...", flush=True)
    result = what(config, buckets)
    print("  CPU s per round:", [round(s, 2) for s in result["seconds"]], flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "anatomy.md")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    buckets = Buckets()
    buckets.wrap_loader_batches()
    load = [os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp:
        config = demo_config(Path(tmp), args.rounds)
        first = timed_run(plain_rounds, config, buckets)
        engine = timed_run(engine_rounds, config, buckets)
        second = timed_run(plain_rounds, config, buckets)
    load.append(os.getloadavg())
    report = write_report(args.out, engine, [first, second], same_work(engine, first), load)
    print(report)


def _shares(phases: list[dict[str, float]], seconds: list[float]) -> dict[str, float]:
    """Mean share of the round per phase; compute = local training and evaluation without
    their data loading; "other" is what no wrapper covers."""
    total = sum(seconds)
    summed: dict[str, float] = defaultdict(float)
    for p in phases:
        for key, value in p.items():
            summed[key] += value
    out = {"model compute": sum(summed[k] for k in COMPUTE) - summed["data"]}
    out.update({k: v for k, v in summed.items() if k not in COMPUTE})
    out["other"] = total - sum(out.values())
    return {k: v / total for k, v in out.items()}


def write_report(
    out: Path, engine: dict, plains: list[dict], check: dict[str, float], load: list[tuple]
) -> str:
    rounds = len(engine["seconds"])
    steady = range(1, rounds - 1)  # round 1 warms up; the last one also closes the run
    plain = [statistics.fmean(p["seconds"][i] for p in plains) for i in range(rounds)]
    engine_s = engine["seconds"]
    ratio = statistics.fmean(engine_s[i] for i in steady) / statistics.fmean(
        plain[i] for i in steady
    )
    ratio_all = sum(engine_s) / sum(plain)
    lines = [
        "# Round anatomy at the demo configuration (iid1, FedAvg, MD resnet18, cpu profile 64x80)",
        "",
        f"One torch thread, CPU time (`time.process_time`); load average "
        f"{load[0][0]:.2f} before, {load[1][0]:.2f} after (1-minute), on 2 cores.",
        "",
        f"**fmtlbench round / plain PyTorch round, steady rounds 2-{rounds - 1}: "
        f"{ratio:.3f}** (target <= 1.05). All {rounds} rounds, with round 1's warm-up and the "
        f"last round's closing of the run (summary artifacts, MLflow finish): {ratio_all:.3f}.",
        "",
        "| round | fmtlbench CPU s | plain CPU s (before / after the engine) | ratio |",
        "|---|---|---|---|",
    ]
    for i, e in enumerate(engine_s):
        before, after = (p["seconds"][i] for p in plains)
        lines.append(f"| {i + 1} | {e:.2f} | {before:.2f} / {after:.2f} | {e / plain[i]:.3f} |")
    lines += ["", f"Share of a steady round (rounds 2-{rounds - 1}):", ""]
    lines += ["| phase | fmtlbench | plain loop |", "|---|---|---|"]
    shares_e = _shares([engine["phases"][i] for i in steady], [engine_s[i] for i in steady])
    shares_p = _shares(
        [p["phases"][i] for p in plains for i in steady],
        [p["seconds"][i] for p in plains for i in steady],
    )
    for key in dict.fromkeys([*shares_e, *shares_p]):
        lines.append(f"| {key} | {_pct(shares_e.get(key))} | {_pct(shares_p.get(key))} |")
    lines += [
        "",
        "Model compute: forward, losses, backward and AdamW steps of local training, and the",
        "evaluation forwards with their metric meters, without the time spent waiting for",
        "batches (`data`: sampling, decoding, augmentation, collate). `other` is what no timing",
        "wrapper covers: client jobs, loading states into the working model, CPU snapshots,",
        "digests, traffic accounting, background threads (codecarbon, MLflow).",
        "",
        f"Same work: final client states differ by at most {check['state']:.2e} "
        f"(largest entry {check['state_scale']:.1f}), per-round client losses by at most "
        f"{check['loss']:.2e}.",
    ]
    text = "\n".join(lines) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


if __name__ == "__main__":
    main()
