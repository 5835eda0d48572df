# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 5. ZFNet on CIFAR-10
#
# Zeiler and Fergus (2014) looked inside AlexNet with deconvolution and saw first-layer filters that were
# either dead or aliased by the stride of 4. Their fix, smaller 7x7 filters with stride 2 and wider middle
# layers, won ImageNet 2013. The package's `zfnet_cifar` is AlexNet with ZFNet's layer table (5 convolutions,
# 3 max-pools, 3 fully connected layers). The study trained it on an 80/20 split of the CIFAR-10 training set
# and reported **80.7%** on the test set.
#
# Before training, the study looked at the class balance of its split.

# %%
# %matplotlib inline
import os
import tempfile
from pathlib import Path

from IPython.display import Markdown, display

from cnn_study import datasets, exercises, experiments, models, recipes, results, visualize

QUICK = os.environ.get("CNN_STUDY_QUICK", "1") != "0"
OUT = Path(tempfile.gettempdir()) / "cnn-study-tutorials"  # scratch: rerunning a cell replaces its run (overwrite=True)

# %%
train, test = datasets.cifar10(download=True)
train_part, validation = train.split(0.2, seed=0)
visualize.class_distribution(
    {"train (80%)": train_part, "validation (20%)": validation},
    kind="bar",
    title="CIFAR-10 images per class after the 80/20 split",
)

# %%
visualize.class_distribution({"train (80%)": train_part, "validation (20%)": validation}, kind="pie")

# %% [markdown]
# Every class has exactly 4,000 training and 1,000 validation images: CIFAR-10 is balanced, so plain
# accuracy is a fair measure.
#
# ## The model

# %%
print(models.summary("zfnet_cifar", depth=2))

# %% [markdown]
# ## Training
#
# > **Quick mode:** 50 images per class, one epoch. A full run: `cnn-study run zfnet --recipe improved`.

# %%
result = experiments.run(recipes.get_recipe("zfnet", "improved"), out=OUT, quick=QUICK, quiet=True, overwrite=True)
print(f"{'quick' if QUICK else 'full'} run: test accuracy {result.metrics['test_accuracy']:.2%}")
full = [m for m in results.load_results() if m["name"] == "zfnet"]
display(Markdown(results.format_results(full, markdown=True)))

# %% [markdown]
# ## The first layer
#
# ZFNet's point was the first layer. Its 96 filters are 3x3 colour images; after a full run they become
# colour blobs and oriented edges, the same detectors Zeiler and Fergus found.

# %%
visualize.filters(result.model, "features.0", max_filters=32)

# %%
image = datasets.BatchLoader(test, 1).transform(test.images[:1])[0]
visualize.feature_maps(result.model, image, layers=["features.0", "features.4"])

# %% [markdown]
# ## Exercises
#
# Each exercise ends with `exercises.check(name, answer)`, which says whether the answer is right and gives a
# hint if not. The solution is hidden below the exercise.

# %% [markdown]
# **Exercise 1.** The seed recipe holds out 20% of the training set (`train.split(0.2, seed=0)`). How many
# images has the smallest class in that validation part? What does that say about how the split is drawn?

# %%
answer = ...  # your answer
exercises.check("zfnet-smallest-validation-class", answer)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# _, held_out = datasets.cifar10(download=True).train.split(0.2, seed=0)
# answer = min(held_out.class_counts().values())  # every class: the split is stratified
# ```
#
# </details>

# %% [markdown]
# **Exercise 2.** How many filters does ZFNet's first convolution learn (the filters pictured above)?

# %%
answer = ...  # your answer
exercises.check("zfnet-first-layer-filters", answer)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# answer = models.create_model("zfnet_cifar").features[0].out_channels
# ```
#
# </details>
