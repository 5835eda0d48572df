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
# # 10. Training fast: CIFAR-10 on a laptop
#
# This experiment is not in the study; it is ours. Tutorials 4, 5 and 7 train their CIFAR-10 networks for
# dozens of epochs: the `improved` ResNet-20 of tutorial 7 took an hour and a half on a 2-core CPU. Fast
# CIFAR-10 training is a small research field of its own. David Page's "How to train your ResNet" series
# (2018-2019) brought the time to 94% test accuracy on one V100 GPU down to 79 seconds and then to 26,
# tysam-code's hlb-CIFAR10 went on from there, and Keller Jordan's airbench (2024) reaches 94% in 3.29 seconds
# on one A100 GPU, compiled (3.83 s without; "94% on CIFAR-10 in 3.29 Seconds on a Single GPU", arXiv:2404.00498).
#
# None of their techniques needs a GPU. This page takes airbench's, explains each with the paper it comes
# from, trains the result on this page, and measures on a 2-core laptop CPU what each technique is worth (on a
# narrower version of the network).
#
# > **Differences from airbench94, and why.** Its network at three quarters of the width: the three conv groups have 48,
# > 192 and 192 channels instead of 64, 256 and 256 (`widths=(64, 256, 256)` builds airbench94's), a bit over half the
# > parameters and the arithmetic. Its convolution filters train by Muon, as in airbench94's successor airbench94_muon
# > (below), and the other parameters by airbench94's SGD. It trains for 10 epochs instead of 9.9 (airbench94_muon: 8),
# > in batches of 512 instead of 1,024 (airbench94_muon: 2,000), with the loss averaged over the batch instead of summed
# > (the SGD's learning rate and [weight decay](../glossary.md#weight-decay) rescaled so that a step is as large as
# > airbench94's: with half the batch, each image weighs twice as much in it). The width, the optimizer and the number
# > of epochs are the budget's: on 2 CPU cores this recipe ended higher on average (90.14%, three seeds, 11.6 to 12.8
# > minutes each) than the same network trained by SGD alone for 11 epochs (89.47%, three seeds), two thirds of its
# > widths without identity initialisation for 18 epochs (88.78%, five seeds) and one run of airbench94's widths trained
# > by SGD alone for 7 epochs (89.30%), as measured below. Kept from airbench94: the whitened first layer, convolutions
# > that start partly as the identity, the [batch-norm](../glossary.md#batch-normalisation) settings, the 1/9 logit
# > scale, SGD with [Nesterov](../glossary.md#nesterov-momentum) momentum 0.85, 64 times the learning rate for the
# > batch-norm shifts, [label smoothing](../glossary.md#label-smoothing) 0.2, [lookahead](../glossary.md#lookahead) with
# > its rising pull, 2-pixel translations and [alternating flips](../glossary.md#alternating-flip). Changed or left out,
# > for simplicity: our schedule warms up over a fifth of the steps and ends at zero (airbench94's: 23%, ending at 7% of
# > the peak); translations pad with the mean colour (airbench94 reflects the border); the
# > [whitening](../glossary.md#whitening) layer's bias trains throughout, at the batch-norm shifts' rate (airbench94
# > trains it for 3 epochs at the weights' rate); lookahead averages the weights but not the batch-norm statistics; the
# > [test-time augmentation](../glossary.md#test-time-augmentation) is the mirror image alone (airbench94 adds
# > shifted views); and every epoch ends with the last, smaller batch (airbench drops it). Kept from airbench94 where
# > airbench94_muon departs from it: lookahead, the warm-up, the 1/9 logit scale and the 64-fold rate of the batch-norm
# > shifts (airbench94_muon's rates fall linearly from the first step, its logits are divided by the width, and its
# > shifts train at 0.053 against its head's 0.67).

# %%
# %matplotlib inline
import os
import statistics
import tempfile
from pathlib import Path

import torch
from IPython.display import Markdown, display
from matplotlib.figure import Figure

from cnn_study import datasets, exercises, experiments, models, recipes, results, training, visualize

QUICK = os.environ.get("CNN_STUDY_QUICK", "1") != "0"
OUT = Path(tempfile.gettempdir()) / "cnn-study-tutorials"  # scratch: rerunning a cell replaces its run (overwrite=True)

# %% [markdown]
# ## The recipe, all of it
#
# Every setting of experiment 10 is one literal `Recipe`:

# %%
recipe = recipes.get_recipe("fast_cifar")
for name, value in recipe.settings().items():
    print(f"{name:>18}: {value}")

# %% [markdown]
# ## The network
#
# A short, wide network: a 2x2 convolution, then three groups of two 3x3 convolutions, each group halving
# the resolution with a max-pool (31 -> 15 -> 7 -> 3), and a global max-pool under one linear layer. The recipe
# builds it with 48, 192 and 192 channels (its `model_kwargs`; the model's default is the narrower 32, 128, 128).
# It has about four times ResNet-20's parameters in 7 convolutions instead of 19: fewer, wider layers, which keep a
# CPU's vector units busier (`benchmarks/train_throughput.py` measures the share of the machine's peak each reaches).

# %%
print(models.summary(recipe.model, depth=2, **recipe.model_kwargs))
for name, kwargs in ((recipe.model, recipe.model_kwargs), ("resnet20", {})):
    print(f"{name}: {sum(p.numel() for p in models.create_model(name, **kwargs).parameters()):,} parameters")

# %% [markdown]
# ## A whitened first layer
#
# Neighbouring pixels are strongly correlated, and so are the three colour channels of one pixel. A network spends its
# first epochs learning to undo that. Whitening does it before training: the covariance matrix of all 2x2x3 patches of
# the training images (uncentred, as in airbench: the patches' mean is not subtracted) has 12 eigenvectors; a filter
# along each eigenvector, divided by the square root of its eigenvalue, gives outputs that are uncorrelated and of unit
# variance. This is PCA whitening; Coates and Ng (2012, Section 3.1) use ZCA whitening, which multiplies the outputs
# back by the eigenvectors, so that they look like pixels again and are just as uncorrelated. The layer keeps each
# filter and its negative (24 in all), so that the GELU after it passes both signs, and its weights never train (Jordan,
# 2024, Section 3.2). `initialise_from_data` computes them from 5,000 training images before training starts:

# %%
train, test = datasets.cifar10(download=True)
training.seed_everything(0)  # the initial weights of a seed-0 run (the Muon section below looks at its gradient)
model = models.create_model(recipe.model, **recipe.model_kwargs)
sample = datasets.BatchLoader.for_model(train.sample(500, seed=0), model)
model.initialise_from_data(sample)
visualize.filters(model, "whiten")

# %% [markdown]
# Each filter is drawn with its own colour scale. The first twelve come in order of the variance of their
# direction in the images, smallest first: checkerboards of opposite colours (fine detail, rare in photos),
# then edges, then flat patches of one colour (the patch's overall brightness and colour, which vary most).
# The second twelve are the same filters negated. The claim is checkable: on these images the layer's first
# 12 outputs (without the bias) are uncorrelated, and their variances are 1 except in the weakest directions,
# which `eps` (added to each eigenvalue) keeps from being blown up to full strength.

# %%
images = torch.cat([batch for batch, _ in sample])
with torch.no_grad():
    outputs = torch.nn.functional.conv2d(images, model.whiten.weight[:12]).transpose(0, 1).flatten(1)
covariance = torch.cov(outputs)
off_diagonal = covariance - torch.diag(covariance.diagonal())
print(f"variances {covariance.diagonal().min():.3f} to {covariance.diagonal().max():.3f}")
print(f"largest covariance between two different outputs: {off_diagonal.abs().max():.4f}")

# %% [markdown]
# ## Convolutions that start as the identity
#
# A randomly initialised convolution scrambles its input: before training, what the whitened first layer computed
# reaches the classifier mixed with noise from six random layers. airbench94 starts every 3x3 convolution partly as the
# identity instead (its `Conv.reset_parameters` calls `torch.nn.init.dirac_`): for each input channel i, filter i has a
# single 1 at the centre of its kernel for channel i and zeros elsewhere, so it copies the channel through; the filters
# beyond the number of input channels keep their random start. The second convolution of each group has as many filters
# as input channels, so it starts as the exact identity. The idea comes from DiracNets (Zagoruyko and Komodakis, 2017),
# which train deep networks without skip connections by writing each convolution as the identity plus a learned part.
# Here it is one line, `models.fast_cifar.initialise_as_identity`, applied when the network is built with
# `identity_init=True`, as experiment 10's recipe builds it. In the ablation below it makes the narrower network learn
# faster in its first epochs, but a whole 18-epoch run of that network with it ended no better; the wider, shorter
# recipe keeps it, and was not run without it.

# %%
conv = model.features[2][0]  # group 1's first convolution: 24 channels in (the whitening layer's), 48 out
inputs = torch.randn(1, conv.in_channels, 8, 8)
with torch.no_grad():
    copied = torch.equal(conv(inputs)[:, : conv.in_channels], inputs)
print(f"{conv}: its first {conv.in_channels} filters copy their input channels: {copied};", end=" ")
print(f"the other {conv.out_channels - conv.in_channels} start random")

# %% [markdown]
# ## Batch norm for short training
#
# Batch normalisation (Ioffe and Szegedy, 2015) normalises each channel over the
# batch in training, and keeps
# a running average of those statistics to use at test time. Two of airbench's settings suit a short run:
# the running averages move fast (momentum 0.4: each batch's statistics count for 40%, instead of torch's
# 10%), so that they describe the latest weights: a batch's statistics count for less than 1% of the average
# 8 batches later, against 22 batches at torch's momentum; and only the shift of each batch norm learns, its
# scale staying at 1.

# %%
norm = model.features[2][2]
print(type(norm).__name__, f"momentum {norm.momentum}, eps {norm.eps}, scale trains: {norm.weight.requires_grad}")

# %% [markdown]
# ## Label smoothing
#
# With label smoothing (Szegedy et al., 2016, Section 7) the training target is not "100% this class" but
# 80% this class and the other 20% spread over all ten: the network is never pushed to ever larger logits for
# images it already classifies right. The recipe's `label_smoothing` is 0.2, airbench's.
#
# ## The learning rate, and lookahead
#
# The learning rate rises linearly from a fifth of its peak over the first fifth of training, then falls
# linearly to zero (`schedule="triangle"`). Lookahead (Zhang et al., 2019, "Lookahead Optimizer: k steps
# forward, 1 step back") keeps a second, slow copy of the weights: every 5 steps the slow weights move
# towards the fast ones, and the fast ones restart from there. airbench lets the slow weights hold back more
# and more as training goes on (the *pull*, `training.Lookahead.pull`): early on nothing is held back; at the
# end the slow weights average about the last 20 steps, which smooths out the noise of the last steps,
# much as an exponential moving average of the weights does.

# %%
stage = recipe.stages[0]  # the recipe's one training stage
steps = stage.epochs * (50_000 // recipe.batch_size + 1)
weight = torch.nn.Parameter(torch.zeros(1))
optimizer = training.Lookahead(training.make_optimizer("sgd", [weight], stage.lr), total_steps=steps)
scheduler = training.make_scheduler(stage.schedule, optimizer, steps)
rates, pulls = [], []
for _ in range(steps):
    rates.append(optimizer.param_groups[0]["lr"])
    pulls.append(optimizer.pull())
    weight.grad = torch.zeros(1)
    optimizer.step()
    scheduler.step()
figure = Figure(figsize=(10, 3), layout="constrained")
left, right = figure.subplots(1, 2)
epochs = [step * stage.epochs / steps for step in range(steps)]
left.plot(epochs, rates)
left.set(xlabel="epoch", ylabel="learning rate", title="The triangular schedule")
right.plot(epochs, pulls)
right.set(xlabel="epoch", ylabel="pull", title="How much lookahead holds back")
figure

# %% [markdown]
# ## Muon: orthogonalised steps for the filters
#
# The recipe's SGD trains the batch-norm shifts, the whitening layer's bias and the linear head. The convolution
# filters train by [Muon](../glossary.md#muon) instead (Jordan et al., 2024, "Muon: An
# optimizer for hidden layers in neural networks", a blog post), as in airbench94_muon, airbench94's successor in the
# airbench repository (whose README times it at 2.59 s to 94.01% on an A100; its table of the paper's older records
# gives airbench94 3.83 s). The 192 filters of 192 x 3 x 3 weights of a convolution form one 192 x 1,728 matrix. Muon
# keeps SGD's momentum of its gradients, but does not step along it: it steps along the nearest (semi-)orthogonal
# matrix, which has the same singular vectors (the directions) with every singular value (the size along each) set to 1.
# A gradient is dominated by a few directions; the orthogonalised step moves the filters as far along the rare ones as
# along the common ones. Bernstein and Newhouse (2024, "Old Optimizer, New Norm", arXiv:2409.20325) derive this step as
# steepest descent under the spectral norm. `training.orthogonalise` computes it without a singular value decomposition,
# by three rounds of a polynomial in the matrix (a Newton-Schulz iteration), which lift the singular values to between
# about 0.5 and 1.5 rather than to exactly 1 (the weakest directions stay lower). As airbench94_muon does,
# `training.Muon` also rescales each filter bank to a fixed norm before its step: batch norm undoes any scale of a
# convolution's output, so this changes nothing the network computes, and a step of the learning rate turns the filters
# by about as much all through training. Its settings are in the recipe's stage: `muon_lr` 0.1 and Nesterov momentum
# `muon_momentum` 0.6 (airbench94_muon's momentum; its step size of 0.24 is for batches of 2,000; 0.1 is our choice for
# batches of 512). The schedule and lookahead above drive both optimizers, Muon included (airbench94_muon's Muon has
# no warm-up and no lookahead).
#
# One gradient of the recipe's network as it starts, on a batch of 500 training images, and Muon's step from it:

# %%
conv = model.features[3][4]  # group 2's second convolution: 192 filters of 192 x 3 x 3
batch, labels = next(iter(datasets.BatchLoader.for_model(train.sample(50, seed=1), model, batch_size=500)))
loss, _ = training.loss_and_predictions(model(batch), labels, stage.label_smoothing)
loss.backward()
gradient = conv.weight.grad.flatten(1)  # 192 x 1,728
figure = Figure(figsize=(7, 3.5), layout="constrained")
axes = figure.subplots()
for name, matrix in (("gradient", gradient), ("Muon's step (orthogonalised)", training.orthogonalise(gradient))):
    sizes = torch.linalg.svdvals(matrix)
    axes.plot(sizes / sizes.max(), label=name)
    share = sizes[:10].square().sum() / sizes.square().sum()
    print(f"{name}: its 10 largest of {len(sizes)} directions hold {share:.0%} of its squared size,")
    print(f"    and its smallest direction is {sizes[-1] / sizes[0]:.1%} of its largest")
axes.set(yscale="log", xlabel="direction (singular vector), largest first", ylabel="size / largest size")
axes.set_title("One convolution's gradient and Muon's step: sizes along their 192 directions")
axes.legend()
figure

# %% [markdown]
# The gradient is dominated by a few directions: its 10 largest of 192 hold 66% of its squared size, and its smallest is
# 2.2% of its largest. Muon's step spreads its size almost evenly (8% in its 10 largest, where an even spread would put
# 5%); only its weakest directions stay short of the largest (37% for the smallest), where three rounds of the iteration
# do not lift them all the way. The full runs below measure what this buys: the same network, trained by SGD alone for
# one epoch more, ended lower in every seed (89.58, 89.33 and 89.50% against Muon's 90.21, 89.99 and 90.22%).

# %% [markdown]
# ## Alternating flips and test-time mirroring
#
# Mirroring half the training images at random doubles the data, but at random an image can be shown the
# same way round several epochs in a row. airbench's *alternating flip* (Jordan,
# 2024, Section 3.6)
# mirrors a random half in the first epoch and then flips every image in every other epoch, so any two
# consecutive epochs show each image once each way. Shifts of up to 2 pixels (`CropFlip(2, flip=False)`)
# come on top. At test time the reported accuracy averages the network's outputs for each image and its
# mirror image (`test_mirror=True`).

# %%
loader = datasets.BatchLoader(train.sample(4, seed=0), batch_size=40, alternating_flip=True)
print("image:           ", list(range(10)))
for epoch in range(1, 5):
    loader.set_epoch(epoch)
    flipped = loader.flipped_in_odd_epochs[:10] ^ (epoch % 2 == 0)
    print(f"mirrored, epoch {epoch}:", [int(flag) for flag in flipped])

# %% [markdown]
# ## Train it
#
# In quick mode (the default; `CNN_STUDY_QUICK=0` runs the full recipe) this trains on 20,000 of the 50,000
# training images for 4 epochs and tests on 5,000 test images: 135 s for the whole command on 2 CPU cores,
# where it reached 82.1% (a quick-mode number: it shows that the network learns in a lesson's minutes, not
# what the recipe reaches). The full recipe takes 11.6 to 12.8 minutes there (see the Results page).

# %%
result = experiments.run(recipe, out=OUT, quick=QUICK, quiet=True, overwrite=True)
print(result.summary())
visualize.training_curves(result.history, title="Experiment 10 on this page", held_out="test")

# %% [markdown]
# The dashed curves are the test set, measured after every epoch with one view per image: the recipe
# holds out no validation split, and within a run nothing is chosen by looking at it (the last epoch is what is
# reported). The recipe itself was chosen by comparing these test accuracies, though (its width, optimizer and
# length: the budget table below), so its full runs' mean is slightly optimistic.

# %% [markdown]
# ## The full runs
#
# `cnn-study run fast_cifar --seed N` for three seeds, on a 2-core laptop CPU, all 10,000 test images:

# %%
seeds = results.runs_over_seeds("fast_cifar")
display(Markdown(results.format_results([metrics for metrics, _ in seeds], markdown=True)))
accuracies = [metrics["test_accuracy"] for metrics, _ in seeds]
minutes = [metrics["wall_seconds"] / 60 for metrics, _ in seeds]
single_views = [history.column("val_accuracy")[-1] for _, history in seeds]  # the last epoch's one-view test
print(
    f"{len(seeds)} seeds: test accuracy {statistics.mean(accuracies):.2%} +- {statistics.stdev(accuracies):.2%} "
    f"(mean +- standard deviation), {min(minutes):.1f} to {max(minutes):.1f} minutes per command; "
    f"with one view per test image, {statistics.mean(single_views):.2%} on average"
)

# %% [markdown]
# ## Time to accuracy
#
# The same CPU, two recipes: test accuracy after every epoch against the time spent training, for
# experiment 10 and for tutorial 7's `improved` ResNet-20 (100 epochs of SGD with
# [one-cycle](../glossary.md#cosine-and-one-cycle-schedules), cutout and label
# smoothing).

# %%
figure = Figure(figsize=(8, 4), layout="constrained")
axes = figure.subplots()
runs = {f"fast_cifar, seed {metrics['seed']}": history for metrics, history in seeds}
runs["resnet20, improved recipe"] = results.load_history("resnet", "improved")
for label, history in runs.items():
    minutes = torch.tensor(history.column("seconds")).cumsum(0) / 60
    axes.plot(minutes, [100 * a for a in history.column("val_accuracy")], marker=".", label=label)
axes.axhline(90, color="grey", linestyle=":", linewidth=1)
axes.set(xscale="log", xlabel="minutes of training (log scale)", ylabel="test accuracy (%)", ylim=(0, 100))
axes.set_title("CIFAR-10 on a 2-core CPU: accuracy against training time")
axes.legend()
figure

# %% [markdown]
# Experiment 10's test curve swings wildly until its last epochs (every seed drops below 60% at least once after its
# first epoch, one of them to 41.5%): while the learning rate is high (it peaks after 2 epochs and is still above half
# its peak in the sixth), and with running batch-norm statistics that follow the last batches (a likely cause, not a
# measured one), a single-view test at an epoch's end says little, and the curve settles as the rate falls. Every seed
# first passes 85% in its eighth or ninth epoch, after 9 to 11 minutes of training; ResNet-20 passed it after 78
# minutes, and ended at 89.82% after 93, tested with one view per image. Tested the same way, the three seeds' last
# epochs average 89.21% (measured in the bfloat16 they trained in, where ResNet-20's 89.82% was measured in float32;
# 90.14% with the mirror-averaged test, computed in float32). Fast training here buys a run seven to eight times shorter
# for about 0.6 points of accuracy, both tested with one view per image; ResNet-20 trained in float32, before training
# in bfloat16 came to CPUs, and in bfloat16 it would train up to 1.47 times as fast (the Results page's bfloat16 table),
# which would make the run about five times shorter instead (not measured). Against airbench94's 94%, possible reasons
# for the gap, none measured apart here: the JPEG copy of CIFAR-10 used here (its compression may cost accuracy against
# the original images), three quarters of airbench94's width, and the departures listed at the top of this page (the
# schedule, the padding, the whitening bias, lookahead without the batch-norm statistics, no shifted test views,
# training in bfloat16).

# %% [markdown]
# ## Width against epochs, in a budget of about 15 minutes
#
# On a CPU the time an epoch takes grows with the network's arithmetic, so a time budget is a choice between a wider
# network for fewer epochs and a narrower one for more. Four versions of the recipe were trained in full on the same
# kind of 2-core CPU, each the recipe with the widths, identity initialisation, optimizer of the filters and epochs of
# its row, narrowest first: the recipe's first version (the narrower network for 18 epochs, five seeds of `cnn-study run
# fast_cifar` when it was the recipe), its second (the recipe's network trained by SGD alone for 11 epochs, three seeds,
# likewise), the recipe as it is now, and airbench94's widths by SGD for 7 epochs (one seed, through `experiments.run`
# with those settings changed; an eighth epoch would have fit in about 14 minutes, and was not tried). The other rows'
# files are kept under `docs/results/budgets/`.

# %%
BUDGETS = results.PUBLISHED_RESULTS / "budgets"
NARROW_EPOCHS = 18  # the first recipe's


def network(metrics: dict) -> str:
    """The widths of a run's network, and whether its convolutions started partly as the identity."""
    kwargs = metrics["recipe_settings"]["model_kwargs"]
    groups = models.create_model(metrics["model"], **kwargs).features[2:]
    widths = ", ".join(str(group[0].out_channels) for group in groups)
    return f"{widths}{' + identity init' if kwargs.get('identity_init') else ''}"


def filters_optimizer(metrics: dict) -> str:
    """What trained a run's convolution filters: ``"Muon"`` or ``"SGD"``."""
    return "Muon" if metrics["recipe_settings"]["stages"][0]["optimizer"] == "muon" else "SGD"


trade: dict[tuple[str, str, int], list[dict]] = {}  # (network, optimizer, epochs): the metrics of each seed's run
budget_runs = [metrics for metrics, _ in results.published_runs("fast_cifar", BUDGETS)]  # every row but the recipe's
# narrowest network first; of one network, SGD first
for metrics in sorted(
    [*budget_runs, *(metrics for metrics, _ in seeds)],
    key=lambda metrics: (metrics["parameters"], filters_optimizer(metrics) == "Muon"),
):
    trade.setdefault((network(metrics), filters_optimizer(metrics), metrics["epochs"]), []).append(metrics)
rows = [
    "| network (channels) | filters trained by | epochs | seeds | test accuracy | minutes per run "
    "| seconds per epoch |",
    "|---|---|---:|---:|---:|---:|---:|",
]
for (widths, optimizer_name, epochs), runs_of_row in trade.items():
    accuracies = [metrics["test_accuracy"] for metrics in runs_of_row]
    spread = f" +- {statistics.stdev(accuracies):.2%}" if len(accuracies) > 1 else ""
    minutes = [metrics["wall_seconds"] / 60 for metrics in runs_of_row]
    per_epoch = statistics.mean(metrics["epoch_seconds"] / metrics["epochs"] for metrics in runs_of_row)
    rows.append(
        f"| {widths} | {optimizer_name} | {epochs} | {len(runs_of_row)} | {statistics.mean(accuracies):.2%}{spread} "
        f"| {min(minutes):.1f}{f' to {max(minutes):.1f}' if len(minutes) > 1 else ''} | {per_epoch:.0f} |"
    )
display(Markdown("\n".join(rows)))
narrow = [metrics for metrics in budget_runs if metrics["epochs"] == NARROW_EPOCHS]
by_sgd = {  # the recipe's network trained by SGD alone, by seed
    metrics["seed"]: metrics
    for metrics in budget_runs
    if metrics["parameters"] == seeds[0][0]["parameters"] and filters_optimizer(metrics) == "SGD"
}
for metrics, _ in seeds:
    sgd = by_sgd[metrics["seed"]]
    print(
        f"seed {metrics['seed']}: Muon for {metrics['epochs']} epochs {metrics['test_accuracy']:.2%}, "
        f"SGD alone for {sgd['epochs']} {sgd['test_accuracy']:.2%}: "
        f"{100 * (metrics['test_accuracy'] - sgd['test_accuracy']):+.2f} points"
    )

# %% [markdown]
# The recipe is the most accurate row in its budget, and each change of the recipe so far raised every seed: the
# narrower network's best seed (88.99%) is below the worst seed of the recipe's network trained by SGD (89.33%), and
# that row's best (89.58%) is below the recipe's worst (89.99%). Seed by seed, Muon for 10 epochs ended 0.63 to 0.72
# points above SGD alone for 11. One seed of airbench94's widths says less: its 89.30% is three test images below the
# SGD row's worst seed, and Muon was not tried on it, nor on the narrower network. The times say as much about the
# machine as about the network: the narrower network's five seeds ran in three sessions, from 39 s per epoch (seeds 3
# and 4, alone on the cores) to 58 s (seed 0, which shared them with other work for some epochs); of the recipe's
# seeds, seed 0's first two epochs shared the cores with other work (80 and 89 s, against 70 to 74 s for its others),
# and seed 2's epochs took 65 to 70 s where seed 1's took 71 to 77. At 39 s per epoch, 15 minutes fit about 22 of the
# narrower network's epochs: a longer schedule for it was not tried. The recipe meets the accuracy set as this
# experiment's target, a mean of at least 90.0% over three seeds with none below 89.5% (Results page).

# %% [markdown]
# ## What each technique is worth
#
# `scripts/fast_cifar_ablation.py` trains the recipe with one technique removed at a time, and with one added
# (airbench94's identity initialisation), for the same short budget of 3 epochs (about two minutes each here), on all
# 50,000 training images, tested on all 10,000 test images. It was recorded on the recipe's first network, the
# narrower one of the table above (32, 128 and 128 channels, without identity initialisation) trained by SGD alone,
# and its base is still that, so that its record can be reproduced; what Muon is worth is measured at full length in
# the table above instead. A technique's worth is
# the drop in test accuracy when it is removed; a drop smaller than the spread between seeds is no evidence either
# way. It ran for seeds 0, 1 and 2 over three sessions (seeds 0 and 1 in the first, whose results folders were lost
# after the runs; seed 2, and seed 1's `no-test-mirror` run, in the second; `identity-init`, and `full` seed 0 once
# more, in the third); its record is the script's own printed output, which is read below.

# %%
ABLATION = results.PUBLISHED_RESULTS / "fast_cifar_ablation" / "ablation_output.txt"
record: dict[tuple[str, int], dict[int, list[float]]] = {}  # (variant, epochs): {seed: the accuracy of each run}
for line in ABLATION.read_text().splitlines():  # "<variant> seed <N>: run, fast_cifar, <E> epoch(s) ... <x>% on ..."
    variant, rest = line.split(" seed ")
    seed, epochs = int(rest.split(":")[0]), int(rest.split("fast_cifar, ")[1].split(" epoch")[0])
    accuracy = float(rest.split("test accuracy ")[1].split("%")[0]) / 100
    record.setdefault((variant, epochs), {}).setdefault(seed, []).append(accuracy)
for (variant, epochs), by_seed in record.items():
    for seed, accuracies in by_seed.items():
        if len(accuracies) > 1:
            print(f"{variant}, seed {seed}, {epochs} epochs, run {len(accuracies)} times:", end=" ")
            print(", ".join(f"{accuracy:.2%}" for accuracy in accuracies))
by_variant = {
    variant: [by_seed[seed][0] for seed in sorted(by_seed)]
    for (variant, epochs), by_seed in record.items()
    if epochs == 3
}
baseline = statistics.mean(by_variant["full"])
rows = ["| variant (3 epochs) | seeds | test accuracy per seed | mean | change from full |", "|---|---|---|---|---|"]
for variant, values in by_variant.items():
    per_seed = ", ".join(f"{value:.2%}" for value in values)
    mean = statistics.mean(values)
    rows.append(f"| {variant} | {len(values)} | {per_seed} | {mean:.2%} | {100 * (mean - baseline):+.2f} points |")
display(Markdown("\n".join(rows)))
without = {metrics["seed"]: metrics["test_accuracy"] for metrics in narrow}  # the narrower network's full runs
for seed, (accuracy, *_) in record["identity-init", NARROW_EPOCHS].items():
    print(f"the narrower network for {NARROW_EPOCHS} epochs, seed {seed}: {accuracy:.2%} with identity init,", end=" ")
    print(f"{without[seed]:.2%} without")

# %% [markdown]
# The base's three runs span more than two points (79.21% to 81.45%), so a change of the means smaller than
# that is weak evidence. A seed fixes the initial weights, the data order and the augmentation, so the fairer reading
# compares each variant with the base seed by seed; even so, a change that does nothing lands below it in all
# three seeds one time in eight. Two removals cost more than a point in every seed: torch's batch-norm defaults (3.75,
# 2.26 and 2.00 points below the base, seeds 0, 1 and 2) and no label smoothing (3.10, 2.96 and 1.11). Random
# flips instead of alternating ones land below it in every seed too, by less (0.25, 0.93 and 1.36): suggestive, not
# settled. Without whitening the runs land 0.24 above, then 0.64 and 1.45 below: no evidence either way at this
# budget. Without lookahead they land 0.54 and 1.24 points above and 0.06 below: no evidence that it helps at this
# budget, and whether it pays in a whole run has not been tested here. The mirror-averaged test adds
# 0.80, 1.03 and 0.48 points, and this comparison is exact: the `no-test-mirror` variant trains the same network and
# tests it with one view per image (seed 1's in another session, but the one run repeated across sessions repeated
# exactly: `full` seed 0 gave 79.21% in the first session and again in the third, as printed above).
#
# Adding airbench94's identity initialisation is the largest change in the table: 4.07, 2.79 and 2.12 points above the
# base in seeds 0, 1 and 2. On the narrower network it does not survive a whole run: over the first recipe's 18
# epochs, seed 0 with it ended at 88.91%, against 88.99% without (printed above). Starting as the identity makes the
# first epochs learn faster, and by the end of that schedule the network without it had caught up: a reminder that a
# short ablation measures how fast a technique helps, which is not always where the run ends. The first recipe left it
# out for that reason; the current one, wider and shorter, has it, as airbench94 does (a run of the current recipe
# without it was not made).

# %% [markdown]
# ## Exercises
#
# Each exercise ends with `exercises.check(name, answer)`, which says whether the answer is right and gives a
# hint if not. The solution is hidden below the exercise.

# %% [markdown]
# **Exercise 1.** Whitening 3x3 patches instead of 2x2 ones: how many filters would the first layer need, if
# it keeps every whitening direction and its negative, as `fast_cifar` does? Work it out before you count.

# %%
answer = ...  # your answer
exercises.check("whitening-filters-3x3", answer)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# channels = models.create_model("fast_cifar").input_size[0]
# answer = 2 * channels * 3 * 3  # one direction per number in a 3x3x3 patch, and its negative
# ```
#
# </details>

# %% [markdown]
# **Exercise 2.** Predict, then compute: how much does experiment 10's lookahead hold back (its pull)
# halfway through training, to four decimal places? The pull grows with the cube of the training's progress up
# to `0.95 ** 5`.

# %%
answer = ...  # your answer
exercises.check("lookahead-pull-halfway", answer)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# answer = 0.95**5 * 0.5**3
# ```
#
# </details>
