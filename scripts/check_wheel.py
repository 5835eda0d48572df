"""Check an installed cnn-study wheel as a stranger meets it: run it from a fresh virtual environment.

It checks that

* the wheel is at most 20 MB and holds the package alone (no tests, no docs);
* ``cnn_study`` is imported from the environment, not from a checkout;
* ``cnn-study --version`` is the wheel's version, and ``cnn-study list`` lists the models;
* one shipped weight, LeNet-5 on MNIST, reaches its recorded test accuracy (the dataset from
  ``$CNN_STUDY_DATA`` or, with ``--download``, from the internet).

The release workflow (``.github/workflows/release.yml``) runs it on the built wheel, and so does
``tests/test_release.py`` here. Run it with the environment's Python, from outside the checkout::

    python scripts/check_wheel.py dist/cnn_study-0.1.0-py3-none-any.whl [--download]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import zipfile
from pathlib import Path

WHEEL_LIMIT_MB = 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("wheel", type=Path, help="the wheel file that is installed in this environment")
    parser.add_argument("--download", action="store_true", help="download MNIST if $CNN_STUDY_DATA has none")
    args = parser.parse_args()

    size_mb = args.wheel.stat().st_size / 1e6
    print(f"{args.wheel.name}: {size_mb:.1f} MB")
    assert size_mb <= WHEEL_LIMIT_MB, f"the wheel is {size_mb:.1f} MB, over the {WHEEL_LIMIT_MB} MB limit"
    top_level = {name.split("/")[0] for name in zipfile.ZipFile(args.wheel).namelist()}
    assert {name for name in top_level if not name.endswith(".dist-info")} == {"cnn_study"}, top_level

    import cnn_study
    from cnn_study.datasets import BatchLoader, mnist
    from cnn_study.models import available_weights, create_model
    from cnn_study.training import evaluate

    installed = Path(cnn_study.__file__).resolve()
    assert "site-packages" in installed.parts, f"cnn_study imported from {installed}, not the environment"
    assert args.wheel.name.startswith(f"cnn_study-{cnn_study.__version__}-"), args.wheel.name

    command = [str(Path(sys.executable).with_name("cnn-study"))]
    version = subprocess.run([*command, "--version"], capture_output=True, text=True, check=True).stdout
    assert version.split() == ["cnn-study", cnn_study.__version__], version
    listing = subprocess.run([*command, "list"], capture_output=True, text=True, check=True).stdout
    assert "lenet5" in listing and "resnet20" in listing, listing

    recorded = available_weights("lenet5")["mnist"].meta["test_accuracy"]
    model = create_model("lenet5", weights="mnist")
    _, test = mnist(download=args.download)
    accuracy = evaluate(model, BatchLoader.for_model(test, model)).accuracy
    print(f"shipped lenet5-mnist: {accuracy:.2%} on {len(test):,} MNIST test images (recorded {recorded:.2%})")
    assert abs(accuracy - recorded) <= 0.002, (accuracy, recorded)
    print(f"cnn-study {cnn_study.__version__} from {installed.parent}: ok")


if __name__ == "__main__":
    main()
