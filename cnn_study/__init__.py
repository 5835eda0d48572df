"""cnn-study: nine classic CNN experiments as a tested, teachable PyTorch package.

The package is organised the way the data flows, and each fact is decided in one place:

* `cnn_study.datasets` loads a dataset once into in-memory ``uint8`` tensors
  and serves normalised, augmented batches (`BatchLoader.for_model` feeds a
  model as its `input_spec` says: the model owns its input size and normalisation);
* `cnn_study.models` builds the architectures from a registry (a transfer model's name, ``<base>_transfer``,
  is read by `models.transfer` alone; its ImageNet base loads only when asked); one module,
  ``models/_model_file.py``, reads, checks and writes trained-model files for the registry, `load_trained_model`
  and the export of shipped weights;
* `cnn_study.training` fits and evaluates any model on any loader, one `Stage`
  at a time;
* `cnn_study.distributed` lets `training` run on the processes ``torchrun`` starts;
* `cnn_study.recipes` holds the nine experiments (and our tenth, fast training) as data: a `Recipe` names its
  dataset (and the size its photos are stored at), its model on its pretrained base (`Recipe.on_backbone`) and
  its training stages in order, each with what learns in it; `STUDY_REPORTS` holds the study's numbers in its
  own words;
* `cnn_study.experiments` runs a recipe (`run`): everything it does follows from the recipe, which
  ``metrics.json`` records whole, so the results folder, the title and the metrics say what ran;
* `cnn_study.results` reads, checks and tabulates results folders, one metrics row per run;
* `cnn_study.visualize` turns models, data and histories into figures, and `cnn_study.explain` explains a
  model's decisions (Grad-CAM, attributions and their sanity checks);
* `cnn_study.exercises` checks the tutorials' exercises;
* `cnn_study.files` writes files atomically and loads them safely;
* `cnn_study.cli` is the ``cnn-study`` command.
"""

__version__ = "0.1.0"
