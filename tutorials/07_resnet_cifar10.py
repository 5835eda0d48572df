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
# # 7. ResNet on CIFAR-10
#
# Stacking more plain layers should never hurt: a deeper network could copy a shallower one and set the extra
# layers to the identity. Yet He et al. (2016) found that deeper plain networks train *worse*. Their fix:
# let each block learn only a **residual**, `output = relu(x + F(x))`. If the identity is best, `F` only has
# to go to zero, which is easy; gradients also flow straight through the `+ x` shortcuts to early layers.
#
# For CIFAR-10 the paper uses a 3x3 stem with 16 channels and three stages of `n` basic blocks with 16, 32
# and 64 channels: `6n + 2` layers. When a stage halves the resolution, the shortcut subsamples `x` and pads
# the new channels with zeros ("option A"), so shortcuts add no parameters.
#
# The study trained it with SGD (learning rate 0.1, momentum 0.9, weight decay 1e-4), a learning-rate
# schedule, 50 epochs and batches of 128; that is the `seed` recipe here.

# %%
# %matplotlib inline
import os
import tempfile
from pathlib import Path

import torch
from IPython.display import Markdown, display
from matplotlib.figure import Figure

from cnn_study import datasets, exercises, experiments, models, recipes, results, training, visualize
from cnn_study.training import evaluate

QUICK = os.environ.get("CNN_STUDY_QUICK", "1") != "0"
OUT = Path(tempfile.gettempdir()) / "cnn-study-tutorials"  # scratch: rerunning a cell replaces its run (overwrite=True)

# %% [markdown]
# ## The family: depth for almost no parameters

# %%
for name in models.list_models("resnet*"):
    parameters = sum(p.numel() for p in models.create_model(name).parameters())
    print(f"{name:>9}: {parameters / 1e6:.2f}M parameters")

# %%
print(models.summary("resnet20", depth=2))

# %% [markdown]
# ## The learning-rate schedule
#
# The seed recipe anneals the learning rate from 0.1 to zero along a cosine, batch by batch; the improved
# recipe warms up first (one-cycle).

# %%
figure = Figure(figsize=(7, 3), layout="constrained")
axes = figure.subplots()
steps_per_epoch = 50_000 // 128
for recipe_name in ("seed", "improved"):
    recipe = recipes.get_recipe("resnet", recipe_name)
    optimizer = training.make_optimizer(recipe.optimizer, [torch.zeros(1, requires_grad=True)], recipe.lr)
    scheduler = training.make_scheduler(recipe.schedule, optimizer, recipe.epochs * steps_per_epoch)
    rates = []
    for _ in range(recipe.epochs * steps_per_epoch):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    axes.plot([step / steps_per_epoch for step in range(len(rates))], rates, label=f"{recipe_name} ({recipe.schedule})")
axes.set(xlabel="epoch", ylabel="learning rate", title="Learning-rate schedules")
axes.legend()
figure

# %% [markdown]
# ## Training
#
# > **Quick mode:** 50 images per class for one epoch. The full 50-epoch run is `cnn-study run resnet --recipe
# seed`.

# %%
result = experiments.run(recipes.get_recipe("resnet", "seed"), out=OUT, quick=QUICK, quiet=True, overwrite=True)
print(f"{'quick' if QUICK else 'full'} run: test accuracy {result.metrics['test_accuracy']:.2%}")
full = [m for m in results.load_results() if m["name"] == "resnet"]
display(Markdown(results.format_results(full, markdown=True)))

# %% [markdown]
# ## Deeper
#
# The `resnet56` recipe trains the 56-layer member of the family (`n = 9`) with the improved recipe's
# settings and batches of 256. In the paper, going from 20 to 56 layers cut the CIFAR-10 test error from 8.75%
# to 6.97%. The full runs in the table, on this JPEG copy of CIFAR-10:

# %%
for m in full:
    if m["recipe"] in ("improved", "resnet56"):
        print(f"{m['model']:>8} ({m['recipe']}, {m['epochs']} epochs): test error {1 - m['test_accuracy']:.2%}")

# %% [markdown]
# ## Inside a trained network
#
# The package ships the weights of the full `improved` run in the table above (100 epochs, one-cycle,
# cutout, label smoothing), with their metadata in the torchvision manner, so the trained network is one
# line away and needs no training here.

# %%
trained = models.create_model("resnet20", weights="cifar10").eval()
meta = models.available_weights("resnet20")["cifar10"].meta
print(f"{meta['recipe']}: test accuracy {meta['test_accuracy']:.2%}")
_, test = datasets.cifar10(download=True)
sample = test.sample(100, seed=0)
evaluation = evaluate(trained, datasets.BatchLoader.for_model(sample, trained))  # normalised as in training
print(f"on 1,000 test images here: {evaluation.accuracy:.2%}")
visualize.confusion_matrix(evaluation.labels, evaluation.predictions, test.classes)

# %% [markdown]
# The stem's 16 colour filters, and what the stem, the end of the first stage and the end of the last stage
# make of one test image: as the resolution halves from 32 to 16 to 8, the maps get coarser and more abstract.

# %%
visualize.filters(trained, "stem.0")

# %%
image = datasets.BatchLoader(test, 1).transform(test.images[:1])[0]
visualize.feature_maps(trained, image, layers=["stem.0", "stage1.2.conv2", "stage3.2.conv2"], max_channels=8)

# %% [markdown]
# ## Exercises
#
# Each exercise ends with `exercises.check(name, answer)`, which says whether the answer is right and gives a
# hint if not. The solution is hidden below the exercise.

# %% [markdown]
# **Exercise 1.** How many parameters has ResNet-32 (n = 5)? Compare with the 0.46M of the paper's Table 6.

# %%
answer = ...  # your answer
exercises.check("resnet32-parameters", answer)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# answer = sum(p.numel() for p in models.create_model("resnet32").parameters())
# ```
#
# </details>

# %% [markdown]
# **Exercise 2.** The seed recipe's cosine schedule starts at 0.1 and anneals to 0. What is the learning rate
# halfway?

# %%
answer = ...  # your answer
exercises.check("resnet-cosine-halfway", answer)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# import math
#
# answer = 0.1 * (1 + math.cos(math.pi / 2)) / 2
# ```
#
# </details>
