"""``cnn-study evaluate`` end to end, old path against new: wall time and peak RSS, each in a fresh process.

* ``old``: what the command did before issue 18: the test set in batches of 500 at the model's input
  size, NCHW, the transfer model as trained (batch norms unfolded), float32;
* ``new``: ``cnn-study evaluate MODEL_FILE`` as it is now (`BatchLoader.for_model`, folded batch
  norms, float32 as the run measured);
* ``new --bfloat16``: the same with the base in `cnn_study.training.extraction_precision`.

Both score the same images with the same weights and print their accuracy, so the speed-up is read
next to any change in the result. Each path is timed from the start of its process (imports
included) to its exit, as a user waits for it, after one untimed run that leaves the dataset's decoded cache
and the files in memory for all paths alike.

Usage::

    CNN_STUDY_DATA=... python benchmarks/evaluate_cli.py runs/vgg16_dogs_vs_cats/improved-efficientnet_lite0/model.pt
"""

from __future__ import annotations

import argparse
import json
import time

from common import run_child

OLD_PATH = """
import json, sys
from cnn_study.datasets import DATASETS, BatchLoader
from cnn_study.models import load_trained_model
from cnn_study.training import evaluate, peak_memory
model, meta = load_trained_model(sys.argv[1])
_, test = DATASETS[meta["dataset"]](None)
spec = model.input_spec()
loader = BatchLoader(test, 500, image_size=spec.size[-1], mean=spec.mean, std=spec.std)
accuracy = evaluate(model, loader, average_mirror=meta.get("test_mirror", False)).accuracy
print(json.dumps({"accuracy": accuracy, **peak_memory(next(model.parameters()).device)}))
"""

NEW_PATH = """
import json, sys
from cnn_study.cli import main
from cnn_study.training import peak_memory
import torch
assert main(["evaluate", sys.argv[1], "--device", "cpu", *sys.argv[2:]]) == 0
print(json.dumps(peak_memory(torch.device("cpu"))))
"""


def measure(code: str, *arguments: str) -> tuple[float, dict]:
    """Run ``code`` in a fresh Python process; its wall time and the JSON of its last output line."""
    started = time.perf_counter()
    lines = run_child(["-c", code, *arguments]).strip().splitlines()
    seconds = time.perf_counter() - started
    return seconds, {**json.loads(lines[-1]), "output": lines[:-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_file", help="a model.pt written by cnn-study run")
    model_file = parser.parse_args().model_file
    measure(NEW_PATH, model_file)  # untimed: decodes the dataset into its cache and warms the page cache for all
    old_seconds, old = measure(OLD_PATH, model_file)
    print(f"{'path':<16} {'seconds':>8} {'peak RSS':>9}  speed-up  result")
    old_memory = old["peak_rss_mb"] / 1024
    print(f"{'old':<16} {old_seconds:>8.1f} {old_memory:>6.2f} GB     1.00x  accuracy {old['accuracy']:.2%}")
    for name, options in (("new", ()), ("new --bfloat16", ("--bfloat16",))):
        seconds, new = measure(NEW_PATH, model_file, *options)
        result = new["output"][-1].split(": ", 1)[-1]
        print(
            f"{name:<16} {seconds:>8.1f} {new['peak_rss_mb'] / 1024:>6.2f} GB {old_seconds / seconds:>8.2f}x  {result}"
        )


if __name__ == "__main__":
    main()
