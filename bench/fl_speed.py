"""Speed and accuracy figures for refiner.fl (prints figures; not a test).

    .venv/bin/python bench/fl_speed.py                     # everything, torch's default thread count
    .venv/bin/python bench/fl_speed.py --threads 1 --rounds 10 --lrs 0.1 --models small_cnn

Sections: MNIST load (CSV parse + cache write, then cache), one local epoch on a 12k shard,
evaluate vs evaluate_many (6 models, 2k images), one validator's evaluate_round (5 workers), and
plain FedAvg with 5 IID workers (4k..12k images), 2k validation held out, official 10k test set.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from refiner.fl.data import load_mnist, split_mnist
from refiner.fl.evaluation import evaluate, evaluate_many
from refiner.fl.models import initial_state, resolve_model
from refiner.fl.plain import RoundStats, run_fedavg
from refiner.fl.round_evaluation import evaluate_round
from refiner.fl.training import TrainingConfig, train_local

SHARDS = [4000, 6000, 8000, 10000, 12000]


def timed(label: str, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    dt = time.perf_counter() - t
    print(f"  {label:<52} {dt:8.2f} s", flush=True)
    return out, dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    ap.add_argument("--models", default="small_cnn,mnist_cnn", help="models for the speed sections")
    ap.add_argument("--fl-models", default="small_cnn", help="models for the FedAvg accuracy runs")
    ap.add_argument("--lrs", default="0.05,0.1", help="learning rates for the FedAvg accuracy runs")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0, help="seed of the data split and of training")
    ap.add_argument("--skip", default="", help="comma list of sections to skip: load,epoch,eval,round,fl,loo")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    skip = set(filter(None, args.skip.split(",")))
    models = [m for m in args.models.split(",") if m]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)", flush=True)

    if "load" not in skip:
        print("MNIST load")
        with tempfile.TemporaryDirectory() as tmp:
            timed("first load: parse CSVs + write .npz cache", load_mnist, Path(tmp))
            timed("second load: from the .npz cache", load_mnist, Path(tmp))
    train, test = load_mnist()
    validation, shards = split_mnist(train, SHARDS, validation_size=2000, seed=args.seed)

    if "epoch" not in skip:
        print("one local epoch on a 12k shard (batch 32, SGD)")
        for name in models:
            fn = resolve_model(name)
            timed(f"{name}", train_local, fn, initial_state(fn, 0), shards[-1], TrainingConfig(lr=0.1))

    if "eval" not in skip:
        print("evaluate x6 vs evaluate_many(6) on 2k validation images")
        for name in models:
            fn = resolve_model(name)
            states = [initial_state(fn, s) for s in range(6)]
            evaluate(fn, states[0], validation)  # warm-up
            t = time.perf_counter()
            one = [evaluate(fn, s, validation) for s in states]
            t1 = time.perf_counter() - t
            many, t2 = timed(f"{name}: evaluate_many", evaluate_many, fn, states, validation)
            print(f"  {name + ': 6 x evaluate':<52} {t1:8.2f} s")
            print(f"  {name}: identical bit for bit: {one == many}; per model {t2 / 6:.3f} s")

    if "round" not in skip:
        print("one validator's evaluate_round: 5 workers (2k images, 1 epoch), 2k validation (2N + 2 evals)")
        for name in models:
            fn = resolve_model(name)
            g = initial_state(fn, 0)
            _, small = split_mnist(train, [2000] * 5, validation_size=2000, seed=1)
            cfg = TrainingConfig(lr=0.1)
            updates = [(f"w{i}", train_local(fn, g, d, cfg), len(d)) for i, d in enumerate(small)]
            r, _ = timed(f"{name}: evaluate_round", evaluate_round, fn, g, updates, validation, 1.0)
            print(f"  {name}: losses ppm {[w.loss_ppm for w in r.workers]}")
            print(f"  {name}: contributions ppm {[w.contribution_ppm for w in r.workers]}")

    if "fl" not in skip:
        for name in [m for m in args.fl_models.split(",") if m]:
            fn = resolve_model(name)
            for lr in [float(x) for x in args.lrs.split(",") if x]:
                print(f"plain FedAvg, {name}, lr {lr}, 5 IID workers {SHARDS}, {args.rounds} rounds")
                t = time.perf_counter()

                def show(s: RoundStats) -> None:
                    print(
                        f"  round {s.round:2d}: test acc {s.test_accuracy:.4f}  loss {s.test_loss:.4f}"
                        f"  train {s.train_seconds:6.2f} s  eval {s.eval_seconds:5.2f} s",
                        flush=True,
                    )

                run_fedavg(
                    fn,
                    shards,
                    validation,
                    test,
                    args.rounds,
                    TrainingConfig(lr=lr, seed=args.seed),
                    on_round=show,
                )
                print(f"  total {time.perf_counter() - t:.1f} s")

    if "loo" not in skip:
        name, lr = args.fl_models.split(",")[0], float(args.lrs.split(",")[-1])
        print(f"one validator per round (evaluate_round, eps 1.0), {name}, lr {lr}: contributions in ppm")
        t = time.perf_counter()

        def show_loo(s: RoundStats) -> None:
            print(
                f"  round {s.round:2d}: acc {s.test_accuracy:.4f}  contributions {list(s.contributions_ppm)}"
                f"  train {s.train_seconds:5.2f} s  validator+test {s.eval_seconds:5.2f} s",
                flush=True,
            )

        stats = run_fedavg(
            resolve_model(name),
            shards,
            validation,
            test,
            args.rounds,
            TrainingConfig(lr=lr, seed=args.seed),
            1.0,
            None,
            show_loo,
            contributions=True,
        )
        negative = [sum(1 for s in stats if s.contributions_ppm[i] <= 0) for i in range(len(SHARDS))]
        print(f"  rounds with contribution <= 0, per worker {SHARDS}: {negative} of {len(stats)}")
        print(f"  total {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()
