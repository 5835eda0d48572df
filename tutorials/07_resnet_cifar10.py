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
# Stacking more plain layers should never raise the training error: a deeper network could copy a shallower one and
# set the extra layers to the identity. Yet He et al. (2016) found that deeper plain networks train *worse*. Their
# fix: let each block learn only a **residual**, `output = relu(x + F(x))`. If the identity is best, `F` only has to
# go to zero, which the authors argue is easier than fitting the identity with a stack of nonlinear layers. (For its
# ImageNet plain networks the paper argues that the trouble is unlikely to be vanishing gradients, since with batch
# normalisation it measured healthy gradient norms, and conjectures slow convergence instead, its Section 4.1; the
# same authors' *Identity Mappings in Deep Residual Networks*, 2016, adds that gradients flow through the
# shortcuts to early layers, most directly without the ReLU after the sum that we keep.)
#
# For CIFAR-10 the paper uses a 3x3 stem with 16 channels and three stages of `n` basic blocks with 16, 32
# and 64 channels: `6n + 2` layers. When a stage halves the resolution, the shortcut subsamples `x` and pads
# the new channels with zeros ("option A"), so shortcuts add no parameters.
#
# The paper trained these networks with SGD (momentum 0.9, [weight decay](../glossary.md#weight-decay) 1e-4, batches of
# 128) for 64,000
# iterations, about 164 epochs, dividing the learning rate of 0.1 by 10 at 32,000 and 48,000 iterations,
# with 4-pixel padding, random 32x32 crops and flips, on inputs with the per-pixel mean subtracted (its Section
# 4.2; ResNet-110 first warmed up at 0.01 for about 400 iterations). The study trained one with SGD
# (learning rate 0.1, momentum 0.9, weight decay 1e-4), a learning-rate schedule, 50 epochs and batches of
# 128; that is the `seed` recipe here. The study does not say how deep its ResNet was, which schedule it
# used, nor how it augmented the images: the recipe *assumes* ResNet-20, a cosine schedule and the paper's
# crops and flips.

# %%
# %matplotlib inline
import os
import tempfile
from pathlib import Path

import torch
from IPython.display import Markdown, display
from matplotlib.figure import Figure

from cnn_study import datasets, exercises, experiments, explain, models, recipes, results, training, visualize
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
# recipe warms up first ([one-cycle](../glossary.md#cosine-and-one-cycle-schedules)).

# %%
figure = Figure(figsize=(7, 3), layout="constrained")
axes = figure.subplots()
steps_per_epoch = 50_000 // 128
for recipe_name in ("seed", "improved"):
    stage = recipes.get_recipe("resnet", recipe_name).stages[0]  # the recipe's one training stage
    optimizer = training.make_optimizer(stage.optimizer, [torch.zeros(1, requires_grad=True)], stage.lr)
    scheduler = training.make_scheduler(stage.schedule, optimizer, stage.epochs * steps_per_epoch)
    rates = []
    for _ in range(stage.epochs * steps_per_epoch):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    axes.plot([step / steps_per_epoch for step in range(len(rates))], rates, label=f"{recipe_name} ({stage.schedule})")
axes.set(xlabel="epoch", ylabel="learning rate", title="Learning-rate schedules")
axes.legend()
figure

# %% [markdown]
# ## The problem residual learning solves
#
# He et al. showed the *degradation problem* with plain networks, the same layers without the `+ x`: on CIFAR-10 their
# 56-layer plain network had a higher **training** error than the 20-layer one throughout training (their Fig. 1, and
# Fig. 6, left, for 20 to 56 layers), so the deeper network was harder to optimise, not overfitting; with shortcuts
# the order reversed. `create_model("resnet56", shortcuts=False)` builds the plain network, with exactly the same
# parameters. A full-length comparison of the four networks takes most of a day on a 2-core CPU (the table's
# `resnet56` run below alone took 6.6 hours of epochs); `scripts/small_scale_studies.py resnet` trains all four
# networks by the seed recipe on 1,000 training images for 20 epochs (in batches of 32 at a learning rate of 0.025, so
# that they take 640 steps), on a CPU, and measures them on 500 test images after every epoch. Small-scale evidence
# about optimisation, then, not CIFAR-10 accuracies:

# %%
SMALL_SCALE = results.PUBLISHED_RESULTS / "small_scale"
small = {m["recipe"]: m for m in results.load_results(SMALL_SCALE) if m["name"] == "resnet"}
small_histories = results.published_histories("resnet", SMALL_SCALE)
for variant, m in small.items():
    print(
        f"{variant:>9}: training loss at the last epoch {small_histories[variant].column('train_loss')[-1]:.3f}, "
        f"training accuracy {m['train_accuracy']:.1%}, test accuracy {m['test_accuracy']:.1%} "
        f"({m['train_size']:,} training / {m['test_size']} test images)"
    )
figure = Figure(figsize=(11, 4), layout="constrained")
for axes, (kind, name) in zip(figure.subplots(1, 2, sharey=True), (("plain", "plain"), ("resnet", "residual"))):
    for depth, style in ((20, "--"), (56, "-")):
        history = small_histories[f"{kind}{depth}"]
        axes.plot(
            history.column("epoch"),
            [100 * (1 - a) for a in history.column("train_accuracy")],
            style,
            label=f"{depth} layers",
        )
    axes.set(title=f"{name} networks, 1,000 training images", xlabel="epoch", ylabel="training error (%)")
    axes.legend()
figure

# %% [markdown]
# Without shortcuts, depth hurts: the 56-layer plain network ends with a far higher training error than the
# 20-layer one, on the same images with the same recipe, so its problem is optimisation, not overfitting.
# With shortcuts, the 56-layer network trains far better than its plain counterpart. In 640 steps it has not
# yet overtaken ResNet-20, as it does in the paper after 64,000 (its Fig. 6, middle): this budget shows the
# degradation and what the shortcuts change about it, not the paper's final ranking. (The training error is
# measured on the augmented batches while the network trains; each curve is a single run, one seed.)
#
# ## Training
#
# > **Quick mode.** The cell below trains ResNet-20 by the seed recipe (SGD with momentum, a cosine
# > schedule, crops and flips) on 2,000 images per class for 4 epochs, and tests it on 500 per class: about
# > two minutes on a laptop's two cores. A quick run shows the network learning; it is not a CIFAR-10
# > result. The full 50-epoch run is `cnn-study run resnet --recipe seed` (`CNN_STUDY_QUICK=0` here).

# %%
result = experiments.run(recipes.get_recipe("resnet", "seed"), out=OUT, quick=QUICK, quiet=True, overwrite=True)
print(result.summary())
visualize.training_curves(result.history, title="The seed recipe, on this page", held_out="test")
full = [m for m in results.load_results() if m["name"] == "resnet"]
display(Markdown(results.format_results(full, markdown=True)))

# %% [markdown]
# ## Deeper
#
# The `resnet56` recipe trains the 56-layer member of the family (`n = 9`). In the paper, going from 20 to 56
# layers cut the CIFAR-10 test error from 8.75% to 6.97% (its Table 6). The full runs in the table, on this
# package's JPEG copy of CIFAR-10 (all 10,000 test images):

# %%
for m in full:
    if m["recipe"] in ("improved", "resnet56"):
        print(f"{m['model']:>8} ({m['recipe']}, {m['epochs']} epochs): test error {1 - m['test_accuracy']:.2%}")
shipped = models.available_weights("resnet56")["cifar10"].meta  # the shipped weights: a second run, seed 1
print(f"resnet56 weights shipped: test error {1 - shipped['test_accuracy']:.2%}")
print(f"  trained by: {shipped['recipe']}")

# %% [markdown]
# The shipped ResNet-56 weights come from a second run of the `resnet56` recipe, with seed 1, trained in
# bfloat16 (the table's run trained in float32, before `run` trained in bfloat16 on CPUs) and with the
# recipe's 8x8 cutout (the table's run cut 7x7 squares). Two cautions before reading these as the paper's result:
#
# * the comparison is confounded: the `resnet56` recipe trains for 160 epochs in batches of 256 at a peak
#   learning rate of 0.2, the `improved` ResNet-20 for 100 epochs in batches of 128 at 0.1, so depth is not
#   the only difference;
# * every error here is above the paper's. Our recipes are not the paper's (one-cycle instead of step decay, with the
#   momentum cycled between 0.85 and 0.95 instead of a fixed 0.9; [Nesterov](../glossary.md#nesterov-momentum) momentum;
#   8x8 [cutout](../glossary.md#cutout), a 7x7 one in the table's two runs, where DeVries and Taylor used 16x16 on
#   CIFAR-10; [label smoothing](../glossary.md#label-smoothing); weight decay 5e-4; 100 epochs for ResNet-20 instead of
#   about 164; inputs normalised per channel instead of the per-pixel mean subtracted), and the data is a JPEG copy of
#   CIFAR-10, whose compression changes the pixels slightly; we have not measured how much each of these costs.
#
# > **Differences from the paper, and why.** The architecture is the paper's (option-A shortcuts, 16-32-64
# > channels, Table 6's parameter counts). The `seed` recipe trains for 50 epochs with a cosine schedule (the
# > study's length) instead of 164 epochs with two step decays; the `improved` recipe uses the one-cycle
# > schedule and cutout, which came after the paper, and label smoothing, which it did not use; like the seed
# > recipe, it has no validation split (the paper chose its 64k-iteration length on a 45k/5k train/val split).

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
# The stem's 16 colour filters, and what the stem, the first stage and the last stage output for one test
# image (each stage's output is its last block's `relu(x + F(x))`): 32x32 maps after the stem and the first
# stage, 8x8 after the last, whose 64 maps are what the classifier averages and reads.

# %%
visualize.filters(trained, "stem.0")

# %%
image = datasets.BatchLoader.for_model(test, trained).transform(test.images[:1])[0]
visualize.feature_maps(trained, image, layers=["stem", "stage1", "stage3"], max_channels=8)

# %% [markdown]
# ## What the classifier sees
#
# The last layer is a linear classifier on 64 numbers per image: the last stage's 64 maps, each averaged to
# one number. Training has to make these 64 numbers separate the classes. `explain.penultimate_features`
# records them for every image, `explain.pca` projects them onto their two directions of largest variance and
# `explain.tsne` (t-distributed stochastic neighbour embedding; van der Maaten and Hinton, 2008) arranges
# them in two dimensions so that near neighbours stay near. To measure rather than look,
# `explain.nearest_centroid_accuracy` counts the images that lie nearer their own class's centre than any
# other in the projection. The same network before training is one comparison; the shipped ResNet-56, whose
# last stage also ends in 64 pooled numbers, is the other.

# %%
loader = datasets.BatchLoader.for_model(sample, trained)
training.seed_everything(0)  # the initial weights of a seed-0 run
untrained = models.create_model("resnet20").eval()  # the same architecture before training
deeper = models.create_model("resnet56", weights="cifar10").eval()  # shipped: the resnet56 recipe, seed 1
networks = {"trained ResNet-20": trained, "trained ResNet-56": deeper, "untrained ResNet-20": untrained}
for name, network in networks.items():
    features = explain.penultimate_features(network, loader)
    for projection in (explain.pca, explain.tsne):
        points = projection(features.features)
        score = explain.nearest_centroid_accuracy(points, features.labels)
        print(f"{name}, {projection.__name__}: {score:.1%} of {len(points):,} nearest their class centre")
        if name.startswith("trained"):
            title = f"{name[0].upper()}{name[1:]}, {projection.__name__} of its 64 pooled features"
            display(
                visualize.embedding(
                    points, features.labels, test.classes, predictions=features.predictions, title=title
                )
            )

# %% [markdown]
# Trained, ResNet-20 puts 90% of these test images nearer their own class's centre than any other in t-SNE's map and
# 63% in PCA's, and ResNet-56 92% and 75%; untrained, ResNet-20 puts 15% in t-SNE's and 16% in PCA's, barely above the
# 10% of guessing. In t-SNE's maps each class is a cluster and the mistakes (crosses) sit at the clusters' edges, in
# ResNet-20's many of them between cat and dog. PCA projects onto the 2 of 64 directions with the largest variance:
# distances in its map are the original ones with the other 62 directions dropped, so classes that differ along those
# overlap. In ResNet-20's map automobile overlaps truck, cat dog and airplane bird; in ResNet-56's automobiles,
# trucks, ships, frogs and horses stand apart, and airplanes, birds, cats, deer and dogs crowd the centre. t-SNE keeps
# neighbourhoods instead: its clusters mean something, but the sizes of the clusters and the gaps between them may not
# (Wattenberg, Viégas and Johnson, *How to Use t-SNE Effectively*, Distill, 2016).
#
# The numbers are for this sample of 1,000 test images (100 per class), one t-SNE seed and one run of each network.
# The two networks differ in more than depth (their recipes, in [Deeper](#deeper)), and both classify about 91% of
# this sample right (the legends count their mistakes): that PCA separates more classes in the deeper network's
# features is an observation about these two runs, not evidence that depth alone does it.
#
# ## What a channel responds to
#
# Activation maximisation (Erhan et al., 2009) asks the opposite question: which input excites one channel
# most? Gradient ascent (by Adam) changes the pixels of a faint noise image to raise the channel's mean activation;
# blurring the image every few steps (Yosinski et al., 2015) and shifting it by a pixel or two at every step
# (jitter; Olah et al., *Feature Visualization*, 2017) keep the result from being high-frequency noise.
# Each title gives the channel's mean activation on the starting noise and on the result.

# %%
maxima = {
    f"stage3 #{channel}": explain.maximise_activation(trained, "stage3", channel, learning_rate=0.1)
    for channel in range(6)
}
visualize.activation_maxima(maxima, mean=trained.mean, std=trained.std)

# %% [markdown]
# The pictures are textures and colour patterns rather than objects. That follows from the objective as much
# as from the network: the channel's mean over its 8x8 map rises most when its pattern fills the whole image,
# so the result repeats it everywhere. Each picture is one solution, from one starting image (seed 0).

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
# **Exercise 2.** The seed recipe's cosine schedule starts at 0.1 and anneals to 0. What is the learning rate a
# quarter of the way through training (to four decimal places)? Predict first whether it is above or below 0.075.

# %%
answer = ...  # your answer
exercises.check("resnet-cosine-quarter", answer)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# import math
#
# answer = 0.1 * (1 + math.cos(math.pi / 4)) / 2  # above 0.075: a cosine falls slowly at first
# ```
#
# </details>
