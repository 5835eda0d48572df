#!/usr/bin/env bash
# The CIFAR-10 full runs and the GPU training benchmark, on a lent GPU machine, in one prepared command.
#
# Here (no GPU), once, into the ignored folder data/:
#   python scripts/pack_image_folder.py pack "$CNN_STUDY_DATA/cifar10-jpeg" data/cifar10-jpeg.pack.xz
#   pip download --no-deps -d data/wheels torchinfo   # the only dependency the GPU image lacks
# Device tool:
#   run command="bash scripts/device_cifar_runs.sh 520 resnet:seed alexnet:improved resnet:resnet56:1 ..."
#       carry=["data/cifar10-jpeg.pack.xz", "data/cifar10-jpeg.json.gz", "data/wheels"]
#
# The first argument is the time budget in seconds; each further one is a run, experiment:recipe[:seed].
# All runs start together after the benchmark (small CIFAR models leave most of an H100 idle, so several
# processes share it well); a run still going when the budget is spent is stopped, and its finished epochs
# are kept from its checkpoint (scripts/partial_histories.py: history.json + unfinished.json), which comes
# back too, so that the run can be resumed elsewhere (cnn-study run ... --resume). Each run comes back as
# one tar in $OUT, and the logs in $OUT/logs.tar (the device returns few, shallow files of at most 16 MiB each).
# DEVICE and RUN_ARGS (e.g. DEVICE=cpu RUN_ARGS=--quick) rehearse the script on a machine without a GPU.
# On CUDA the recipes train through torch.compile (CUDA graphs) by default, as the benchmark's "compiled" column
# shows to be fastest; RUN_ARGS=--no-compile trains eagerly (--compile is needed to compile with DEVICE=cpu);
# BENCHMARK=0 skips the benchmark (e.g. for a second call that runs more experiments after the first).
set -uo pipefail
budget=$1
shift
export PYTHONPATH="$PWD:/tmp/site" CNN_STUDY_DATA="$PWD/data" CNN_STUDY_CACHE="$PWD/data/cache" PYTHONUNBUFFERED=1
out="${OUT:-runs-device}"
device="${DEVICE:-cuda}"
mkdir -p "$out" runs
python -m pip install --quiet --no-index --no-deps --target /tmp/site data/wheels/*.whl
[ -d data/cifar10-jpeg ] || python scripts/pack_image_folder.py unpack data/cifar10-jpeg.pack.xz data/cifar10-jpeg
python -c "from cnn_study.datasets import cifar10; cifar10()" # decode the JPEGs once; every run reads the cache
if [ "${BENCHMARK:-1}" = 1 ]; then
  python benchmarks/train_throughput.py --device "$device" --steps 50 --compile | tee "$out/train_throughput.txt"
fi

collect() {  # snapshot each run into $OUT/<experiment>-<folder>.tar (an unfinished one with its checkpoint);
  # files of 15 MB or more (AlexNet's and ZFNet's model and checkpoint) stay behind, as the device returns none
  python scripts/partial_histories.py runs
  for folder in runs/*/*/; do
    name=$(basename "$(dirname "$folder")")-$(basename "$folder")
    find "$folder" -type f -size -15M | tar -cf "$out/$name.tar.tmp" -T - && mv "$out/$name.tar.tmp" "$out/$name.tar"
  done
  tar -cf "$out/logs.tar" runs/*.log
}

deadline=$((SECONDS + budget))
runs=()
for run in "$@"; do
  IFS=: read -r experiment recipe seed <<<"$run"
  name=$experiment-$recipe${seed:+-seed$seed}  # its log: runs/<experiment>-<recipe>[-seed<N>].log
  OMP_NUM_THREADS=2 timeout -s INT $((deadline - SECONDS)) python -m cnn_study run "$experiment" \
    --recipe "$recipe" ${seed:+--seed "$seed"} --device "$device" --quiet --out runs ${RUN_ARGS:-} \
    >"runs/$name.log" 2>&1 &
  runs+=($!)
done
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv -l 20 >runs/gpu-utilisation.log &
fi
while sleep 60; do collect; done &  # if the call's own limit cuts the script short, the last snapshot still returns
wait "${runs[@]}"
kill $(jobs -p)
collect
grep -h "test accuracy\|Error" runs/*.log
