"""cnn-study: nine classic CNN experiments as a tested, teachable PyTorch package.

The package is organised the way the data flows:

* `cnn_study.datasets` loads a dataset once into in-memory ``uint8`` tensors
  and serves normalised, augmented batches;
* `cnn_study.models` builds the architectures from a registry;
* `cnn_study.training` fits and evaluates any model on any loader;
* `cnn_study.experiments` ties the three together as nine recipes;
* `cnn_study.visualize` turns models, data and histories into figures;
* `cnn_study.cli` is the ``cnn-study`` command.
"""

__version__ = "0.1.0"
