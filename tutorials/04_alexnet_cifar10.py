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
# > **Quick mode.** The runs below use 50 images per class for a few epochs, which is enough to see the gap
# > open; the full runs' numbers come from `cnn-study run alexnet`.

# %%
# %matplotlib inline
import os
import tempfile
from pathlib import Path

from cnn_study import datasets, experiments, models, visualize
from cnn_study.training import evaluate

QUICK = os.environ.get("CNN_STUDY_QUICK", "1") != "0"
OUT = Path(tempfile.gettempdir()) / "cnn-study-tutorials"

# %%
train, test = datasets.cifar10(download=True)
sample = train.sample(2, seed=0)
visualize.image_grid(sample.images, sample.labels, train.classes, columns=10, title="CIFAR-10: two images per class")

# %%
print(models.summary("alexnet_cifar", depth=2))

# %% [markdown]
# ## The seed recipe overfits
#
# Training accuracy climbs while validation accuracy stalls: the gap is overfitting.

# %%
epochs = None if not QUICK else 6
seed_run = experiments.run(experiments.get_recipe("alexnet", "seed"), out=OUT, quick=QUICK, epochs=epochs, quiet=True)

# %% [markdown]
# ## The fix
#
# The improved recipe changes the training, not the layers' shapes: batch normalisation, random crops and
# flips, cutout, SGD with Nesterov momentum and weight decay, a one-cycle schedule and label smoothing.

# %%
improved_run = experiments.run(experiments.get_recipe("alexnet", "improved"), out=OUT, quick=QUICK,
                               epochs=epochs, quiet=True)
visualize.training_curves({"seed": seed_run.history, "improved": improved_run.history},
                          title="Seed vs improved recipe (this run)")

# %%
for run in (seed_run, improved_run):
    m = run.metrics
    print(f"{m['recipe']:>9}: train {m['train_accuracy']:.2%}  test {m['test_accuracy']:.2%}")

# %% [markdown]
# ## Full runs

# %%
full = [m for m in experiments.load_results() if m["name"] == "alexnet"]
print(experiments.format_results(full) if full else "No full AlexNet run is published yet: it needs a GPU "
      "(cnn-study run alexnet --recipe seed|improved --device cuda).")

# %% [markdown]
# ## Where the improved network looks

# %%
loader = datasets.BatchLoader(test.sample(20, seed=0), 200)
evaluation = evaluate(improved_run.model, loader)
visualize.confusion_matrix(evaluation.labels, evaluation.predictions, test.classes)

# %%
image = loader.transform(loader.data.images[:1])[0]
visualize.grad_cam(improved_run.model, image, classes=test.classes, mean=test.mean, std=test.std)
