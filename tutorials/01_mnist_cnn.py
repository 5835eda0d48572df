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
# # 1. A simple CNN on MNIST
#
# MNIST is 70,000 handwritten digits, 28x28 pixels in greyscale. A fully connected network has to learn
# every pixel position separately; a **convolutional** network slides the same small filters over the whole
# image, so a stroke detector learned in one corner works everywhere. That weight sharing, plus **pooling**
# (keep the strongest response in each 2x2 window) and **[dropout](../glossary.md#dropout)** (switch random units off
# while training),
# is all this first model needs.
#
# The original study's simple CNN reached **97.93%** on the test set. The study does not describe that network;
# this tutorial trains our assumption of one, the network of PyTorch's official MNIST example, with the package
# and looks inside it.
#
# > **Quick mode.** While the site is built, training runs on a small balanced subset for two epochs
# > (`QUICK = True`): its accuracy, printed with its test-set size and the chance level, only shows that the
# > code runs. The evidence is in the full runs, made with `cnn-study run mnist_cnn` and read from their
# > results files. Set `CNN_STUDY_QUICK=0` to train the full recipe here.

# %%
# %matplotlib inline
import os
import tempfile
from pathlib import Path

from IPython.display import Markdown, display

from cnn_study import datasets, exercises, experiments, models, recipes, results, visualize
from cnn_study.training import evaluate

QUICK = os.environ.get("CNN_STUDY_QUICK", "1") != "0"
OUT = Path(tempfile.gettempdir()) / "cnn-study-tutorials"  # scratch: rerunning a cell replaces its run (overwrite=True)

# %% [markdown]
# ## The data
#
# `datasets.mnist()` returns the training and test parts in memory (images as `uint8` tensors, labels as
# integers). It looks for the files under `$CNN_STUDY_DATA`, or in the user cache when that is unset, and
# downloads them with `download=True`.

# %%
train, test = datasets.mnist(download=True)
print(train.images.shape, train.images.dtype, "labels of the first five:", train.labels[:5].tolist())
print("test images per class:", test.class_counts())
visualize.image_grid(train.images[:16], train.labels[:16], train.classes, title="The first MNIST training images")

# %% [markdown]
# ## The model
#
# Two 3x3 convolutions (32 and 64 filters), one 2x2 max-pool, dropout, a hidden layer of 128 units and ten
# outputs. Read the summary's "Output Shape" and "Param #" columns with two rules:
#
# * a 3x3 convolution without padding loses one pixel on each side: 28 → **26** after the first, 26 → **24**
#   after the second; the 2x2 max-pool then halves it, 24 → **12**. So the map that reaches the head is
#   64 x 12 x 12 = 9,216 numbers per image;
# * a layer has one weight per input-output pair plus one bias per output: the first convolution
#   1 x 32 x 3 x 3 + 32 = 320, the second 32 x 64 x 3 x 3 + 64 = 18,496, the hidden layer
#   9,216 x 128 + 128 = 1,179,776, the output 128 x 10 + 10 = 1,290.
#
# The convolutions, which do the seeing, hold under 2% of the parameters; the layer that reads the
# flattened 12 x 12 maps holds nearly all the rest (the cell below computes its share from the model).

# %%
print(models.summary("mnist_cnn"))
untrained = models.create_model("mnist_cnn")
hidden = untrained.head[2]  # Linear(9216 -> 128)
share = sum(p.numel() for p in hidden.parameters()) / sum(p.numel() for p in untrained.parameters())
print(f"the 9,216 x 128 layer holds {share:.1%} of the parameters")

# %% [markdown]
# ## Training
#
# A recipe is data: dataset, model, optimizer, schedule, epochs, augmentation. The `improved` recipe uses
# [AdamW](../glossary.md#adam-and-adamw) with a [one-cycle](../glossary.md#cosine-and-one-cycle-schedules)
# learning-rate schedule, [label smoothing](../glossary.md#label-smoothing) and small random shifts of the digits.

# %%
recipe = recipes.get_recipe("mnist_cnn", "improved")
print(recipe)
result = experiments.run(recipe, out=OUT, quick=QUICK, quiet=True, overwrite=True)
print(result.summary())

# %% [markdown]
# The full runs, made with `cnn-study run mnist_cnn --recipe seed|improved`. The `seed` recipe is our assumption
# too (Adam at 1e-3, 5 epochs, batches of 128, no augmentation): the study gives none of its settings, and it is
# not the PyTorch example's training either (Adadelta, 14 epochs).

# %%
display(
    Markdown(results.format_results([m for m in results.load_results() if m["name"] == "mnist_cnn"], markdown=True))
)
visualize.training_curves(
    results.published_histories("mnist_cnn"),
    title="Full runs: seed vs improved recipe",
    held_out=results.published_held_out("mnist_cnn"),  # what each run watched: the test set, for both
)

# %% [markdown]
# ## What the trained network does
#
# The package ships the weights of the full `improved` run (`weights="mnist"`). The confusion matrix shows which digits
# it confuses; the misclassified examples show that many of its mistakes are digits a person would hesitate over too.

# %%
model = models.create_model("mnist_cnn", weights="mnist").eval()
test_loader = datasets.BatchLoader(test, 1000)
evaluation = evaluate(model, test_loader)
print(f"shipped weights: test accuracy {evaluation.accuracy:.2%}")
visualize.confusion_matrix(evaluation.labels, evaluation.predictions, test.classes)

# %%
visualize.misclassified(model, test_loader, count=16)

# %% [markdown]
# ## Inside the network
#
# The first layer's 32 filters are 3x3 weights on the normalised pixels (below, each drawn from its smallest weight,
# dark, to its largest, light). The feature maps are the two convolutions' outputs for one test digit, before their
# ReLU (yellow high, dark purple low; each map on its own scale). In the first layer each map is the digit seen
# through one 3x3 filter: many light up along one side of a stroke and go dark along the other, the response of an
# edge detector. Each second-layer map sums 3x3 filters over all 32 first-layer maps after their ReLU (16 of each
# layer's maps are drawn); it still has the 24 x 24 layout of the digit, and several respond mainly to one part of
# it: #13 and #15 are darkest (lowest) along the seven's horizontal bar and much less so along its diagonal stroke.
# The maps only get coarse after the max-pool (12 x 12), which comes after the second convolution.

# %%
visualize.filters(model, "features.0")

# %%
image = test_loader.transform(test.images[:1])[0]
visualize.feature_maps(model, image, layers=["features.0", "features.2"], max_channels=16)

# %% [markdown]
# ## Exercises
#
# Each exercise ends with `exercises.check(name, answer)`, which says whether the answer is right and gives a
# hint if not. The solution is hidden below the exercise.

# %% [markdown]
# **Exercise 1.** The summary above counts the parameters of the fully connected layer after the flatten. How
# many would it have if the second convolution had 32 filters instead of 64? Count by hand from the shapes.

# %%
answer = ...  # your answer
exercises.check("mnist-cnn-hidden-parameters", answer)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# # the flattened feature map: 32 channels of 12 x 12; 128 outputs, each with a bias
# answer = 32 * 12 * 12 * 128 + 128
# ```
#
# </details>

# %% [markdown]
# **Exercise 2.** What shape does `forward_features` return for a batch of 8 MNIST images? Work it out from the
# layers, then confirm with `torch.zeros(8, 1, 28, 28)`.

# %%
answer = ...  # your answer
exercises.check("mnist-cnn-feature-shape", answer)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# import torch
#
# answer = tuple(models.create_model("mnist_cnn").forward_features(torch.zeros(8, 1, 28, 28)).shape)
# ```
#
# </details>
