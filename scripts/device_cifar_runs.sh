#!/usr/bin/env bash
# The CIFAR-10 full runs on a lent GPU machine, in one prepared command.
#
# Here (no GPU):  python scripts/pack_image_folder.py pack "$CNN_STUDY_DATA/cifar10-jpeg" data/cifar10-jpeg.pack
# Device tool:    run command="bash scripts/device_cifar_runs.sh resnet:seed resnet:improved" carry=["data"]
# metrics.json and history.json of every run come back in $OUT/results.tar (the device returns few, shallow files).
set -euo pipefail
python -m pip install --quiet -e .
python scripts/pack_image_folder.py unpack data/cifar10-jpeg.pack data/cifar10-jpeg
export CNN_STUDY_DATA="$PWD/data" CNN_STUDY_CACHE="$PWD/data/cache"
out="${OUT:-runs}"
python benchmarks/train_throughput.py --device cuda | tee "$out/train_throughput.txt"
for run in "$@"; do
  cnn-study run "${run%%:*}" --recipe "${run##*:}" --device cuda --quiet --out runs
  tar -cf "$out/results.tar" $(find runs -name metrics.json -o -name history.json)
done
