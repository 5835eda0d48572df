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
# # 3. LeNet-5
#
# LeNet-5 (LeCun, Bottou, Bengio and Haffner, 1998) read the digits on bank cheques. Its pattern,
# convolution → subsampling → convolution → subsampling → fully connected, is the template of every CNN
# that followed. The layers are named after the paper:
#
# | layer | what it does | output |
# |---|---|---|
# | C1 | 6 filters 5x5 (padding 2 on 28x28 MNIST) | 6 x 28 x 28 |
# | S2 | 2x2 average pooling | 6 x 14 x 14 |
# | C3 | 16 filters 5x5 | 16 x 10 x 10 |
# | S4 | 2x2 average pooling | 16 x 5 x 5 |
# | C5 | 120 filters 5x5: a fully connected layer on the 5x5 maps | 120 x 1 x 1 |
# | F6 | fully connected | 84 |
# | output | fully connected | 10 |
#
# As in the study we use ReLU instead of the scaled tanh, Adam, 10 epochs, batches of 128, and hold out
# 20% of the training set for validation. The study reported **99.03%**.

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
print(models.summary("lenet5"))

# %% [markdown]
# 61,706 parameters: fifty times fewer than the simple CNN of tutorial 1, for a better result.
#
# ## A stratified validation split
#
# `ImageData.split` holds out the same share of every class, reproducibly (seeded).

# %%
train, test = datasets.mnist(download=True)
train_part, validation = train.split(0.2, seed=0)
visualize.class_distribution({"train (80%)": train_part, "validation (20%)": validation}, kind="bar")

# %% [markdown]
# ## Training the seed recipe

# %%
recipe = recipes.get_recipe("lenet5", "seed")
result = experiments.run(recipe, out=OUT, quick=QUICK, quiet=True, overwrite=True)
print(
    f"{'quick' if QUICK else 'full'} run: validation {result.metrics['val_accuracy']:.2%}, "
    f"test {result.metrics['test_accuracy']:.2%}"
)
visualize.training_curves(result.history, title="This run")

# %% [markdown]
# ## Full runs, and the shipped weights

# %%
display(Markdown(results.format_results([m for m in results.load_results() if m["name"] == "lenet5"], markdown=True)))
visualize.training_curves(results.published_histories("lenet5"), title="Full runs: seed vs improved recipe")

# %%
lenet = models.create_model("lenet5", weights="mnist").eval()
test_loader = datasets.BatchLoader(test, 1000)
evaluation = evaluate(lenet, test_loader)
print(f"shipped LeNet-5 weights: test accuracy {evaluation.accuracy:.2%}")
visualize.confusion_matrix(evaluation.labels, evaluation.predictions, test.classes)

# %% [markdown]
# ## C1 and C3 at work
#
# C1's six filters respond to strokes of different orientation; C3 combines them into 16 maps of larger parts.

# %%
visualize.filters(lenet, "features.0")

# %%
image = test_loader.transform(test.images[:1])[0]
visualize.feature_maps(lenet, image, layers=["features.0", "features.3"])

# %% [markdown]
# ## Exercises
#
# Each exercise ends with `exercises.check(name, answer)`, which says whether the answer is right and gives a
# hint if not. The solution is hidden below the exercise.

# %% [markdown]
# **Exercise 1.** Count LeNet-5's parameters by hand, layer by layer (C1, C3, C5, F6, output), as a list of five
# numbers. Their sum should be the 61,706 of the summary above.

# %%
answer = ...  # your answer
exercises.check("lenet5-parameters-by-layer", answer)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# answer = [
#     1 * 6 * 5 * 5 + 6,  # C1
#     6 * 16 * 5 * 5 + 16,  # C3 (all six maps connected)
#     16 * 120 * 5 * 5 + 120,  # C5
#     120 * 84 + 84,  # F6
#     84 * 10 + 10,  # output
# ]
# ```
#
# </details>

# %% [markdown]
# **Exercise 2.** What is the side of S2's feature maps for a 28 x 28 input?

# %%
answer = ...  # your answer
exercises.check("lenet5-s2-size", answer)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# answer = 28 // 2  # C1's padding keeps 28; S2 halves it
# ```
#
# </details>
