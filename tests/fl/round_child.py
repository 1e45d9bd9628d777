"""Run evaluate_round in a fresh process on a given torch thread count and print the results as JSON.

usage: python round_child.py THREADS DIR [MEASURE]   (DIR holds validation.safetensors, global.st,
update-*.st; MEASURE a contribution measure's name, leave-one-out by default)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch


def main() -> None:
    threads, folder = int(sys.argv[1]), Path(sys.argv[2])
    torch.set_num_threads(threads)
    import safetensors.torch

    from refiner.fl.data import Dataset
    from refiner.fl.measures import measure_for
    from refiner.fl.models import deserialize, small_cnn, spec_of
    from refiner.fl.round_evaluation import evaluate_round

    spec = spec_of(small_cnn())
    v = safetensors.torch.load_file(folder / "validation.safetensors")
    validation = Dataset(v["x"], v["y"])
    global_state = deserialize((folder / "global.st").read_bytes(), spec)
    updates = []
    for p in sorted(folder.glob("update-*.st")):
        address, samples = p.stem.split("-")[1:]
        updates.append((address, deserialize(p.read_bytes(), spec), int(samples)))
    measure = measure_for(sys.argv[3] if len(sys.argv) > 3 else "leave-one-out")
    r = evaluate_round(small_cnn, global_state, updates, validation, 1.0, measure)
    print(
        json.dumps(
            {
                "threads": torch.get_num_threads(),
                "fixed": r.fixed_results(),
                "losses_ppm": [w.loss_ppm for w in r.workers],
                "trust_ppm": [w.trust_ppm for w in r.workers],
                "screen": [w.screen for w in r.workers],
                "accuracy_ppm": r.accuracy_ppm,
                "loss_ppm": r.loss_ppm,
                "digest": r.digest.hex(),
                "floats": [float.hex(w.loss) for w in r.workers]
                + [float.hex(w.contribution or 0.0) for w in r.workers]
                + [float.hex(r.loss)],
            }
        )
    )


if __name__ == "__main__":
    main()
