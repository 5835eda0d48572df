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
# # 4. AlexNet on CIFAR-10: overfitting, and how to fix it
#
# AlexNet (Krizhevsky, Sutskever and Hinton, 2012) won ImageNet by a wide margin with five convolutional
# layers, ReLU, overlapping max-pooling, dropout and two GPUs. On 32x32 CIFAR-10 images the first layer's
# 11x11 filters with stride 4 would leave almost nothing, so the package's `alexnet_cifar` keeps the depth and
# widths and shrinks what depends on image size (the table is in the model's docstring and on its
# [architecture page](../architectures/alexnet_cifar.md)).
#
# The study trained it with Adam at 1e-3 for 100 epochs without augmentation and saw **91.07%** training
# accuracy but **53.24%** on validation: a network with 7.5 million parameters memorises 40,000 images.
#

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

# %%
train, test = datasets.cifar10(download=True)
sample = train.sample(2, seed=0)
visualize.image_grid(sample.images, sample.labels, train.classes, columns=10, title="CIFAR-10: two images per class")

# %%
print(models.summary("alexnet_cifar", depth=2))

# %% [markdown]
# ## Watching a network memorise
#
# Overfitting is easiest to see on a small training set. Below, the same network (with batch
# normalisation, so that it learns within a few epochs) trains for ten epochs on 400 images, once without
# augmentation, as in the seed recipe, and once with the improved recipe's crops, flips and cutout. Recipes are
# data, so the variant is one `dataclasses.replace` away.
#
# > **Quick mode.** With `CNN_STUDY_QUICK=0` both recipes train on all 40,000 images for their full length.

# %%
from dataclasses import replace

improved = recipes.get_recipe("alexnet", "improved")
no_augmentation = replace(improved, recipe="no-augmentation", augment=(), label_smoothing=0.0)
epochs = 10 if QUICK else None
settings = dict(out=OUT, quick=QUICK, epochs=epochs, quiet=True, overwrite=True)
runs = {
    "no augmentation": experiments.run(no_augmentation, **settings),
    "augmentation": experiments.run(improved, **settings),
}
visualize.training_curves({name: run.history for name, run in runs.items()}, title="Memorising vs generalising")

# %%
for name, run in runs.items():
    m = run.metrics
    print(
        f"{name:>16}: train {m['train_accuracy']:.2%}  test {m['test_accuracy']:.2%}  "
        f"gap {m['train_accuracy'] - m['test_accuracy']:+.2%}"
    )

# %% [markdown]
# Without augmentation, training accuracy runs ahead of test accuracy and the gap keeps opening: the network
# is learning its 500 training images rather than what makes a cat a cat. Augmentation shows it a new variant
# of every image in every epoch, so memorising stops paying and the gap stays small. The study's seed recipe
# (Adam at 1e-3, 100 epochs, no augmentation, no batch normalisation) shows the same gap at full scale: 91%
# training, 53% validation; our full run of it below shows it too.
# The improved recipe adds batch normalisation, crops, flips and cutout, SGD with Nesterov momentum and
# weight decay, a one-cycle schedule and label smoothing.

# %% [markdown]
# ## Full runs

# %%
full = [m for m in results.load_results() if m["name"] == "alexnet"]
display(Markdown(results.format_results(full, markdown=True)))
for m in full:
    validation = f"val {m['val_accuracy']:.2%}" if m["val_accuracy"] is not None else "no validation split"
    print(f"{m['recipe']:>9}: train {m['train_accuracy']:.2%}, {validation}, test {m['test_accuracy']:.2%}")

# %% [markdown]
# The seed recipe's training accuracy keeps climbing while its validation accuracy stalls after about a
# dozen epochs and its validation loss turns upwards: the overfitting the study saw. The improved recipe's
# training and test accuracy rise together, a few points apart, until the last epochs of the one-cycle
# schedule, when the learning rate is small enough for the network to fit its (augmented) training images.

# %%
visualize.training_curves(results.published_histories("alexnet"), title="Full runs: seed vs improved")

# %% [markdown]
# ## Where the improved network looks

# %%
loader = datasets.BatchLoader(test.sample(20, seed=0), 200)
improved_model = runs["augmentation"].model
evaluation = evaluate(improved_model, loader)
visualize.confusion_matrix(evaluation.labels, evaluation.predictions, test.classes)

# %%
image = loader.transform(loader.data.images[:1])[0]
visualize.grad_cam(improved_model, image, classes=test.classes, mean=test.mean, std=test.std)

# %% [markdown]
# ## Exercises
#
# Each exercise ends with `exercises.check(name, answer)`, which says whether the answer is right and gives a
# hint if not. The solution is hidden below the exercise.

# %% [markdown]
# **Exercise 1.** In the published full run of the seed recipe, how many percentage points separate training
# from validation accuracy at the last epoch? (`results.load_history`)

# %%
answer = ...  # your answer
exercises.check("alexnet-overfitting-gap", answer)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# last = results.load_history("alexnet", "seed").epochs[-1]
# answer = 100 * (last.train_accuracy - last.val_accuracy)
# ```
#
# </details>

# %% [markdown]
# **Exercise 2.** How many parameters has the first fully connected layer of `alexnet_cifar`? Its input is the
# last feature map, flattened.

# %%
answer = ...  # your answer
exercises.check("alexnet-first-dense-parameters", answer)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# answer = 256 * 4 * 4 * 1024 + 1024  # three 2x2 max-pools: 32 -> 4
# ```
#
# </details>
