"""cnn-study: nine classic CNN experiments as a tested, teachable PyTorch package.

The package is organised the way the data flows:

* `cnn_study.datasets` loads a dataset once into in-memory ``uint8`` tensors
  and serves normalised, augmented batches (`BatchLoader.for_model` feeds a
  model as its `input_spec` says);
* `cnn_study.models` builds the architectures from a registry, and reads and
  writes trained-model files;
* `cnn_study.training` fits and evaluates any model on any loader, one `Stage`
  at a time;
* `cnn_study.distributed` lets `training` run on the processes ``torchrun`` starts;
* `cnn_study.recipes` holds the nine experiments (and our tenth, fast training) as data, and the study's numbers;
* `cnn_study.experiments` runs a recipe (`run`) and writes its results folder;
* `cnn_study.results` reads, checks and tabulates results folders;
* `cnn_study.visualize` turns models, data and histories into figures;
* `cnn_study.files` writes files atomically and loads them safely;
* `cnn_study.cli` is the ``cnn-study`` command.
"""

__version__ = "0.1.0"
