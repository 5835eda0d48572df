"""Choose the regularisation of a cached-features head on a validation split, never on the test set.

A recipe that trains its head on cached features (``feature_cache=True``) has a few settings that decide
how much the head overfits: weight decay, label smoothing, dropout, epochs and how many views of each
training image are cached. This script holds out a stratified 20% of the *training* images, caches the
features of the rest under the recipe's views (plus ``--more-views`` further copies of its last random
view), and trains one head per combination of the settings given, printing validation accuracy and loss,
and the accuracy when each image's output is averaged with its mirror image's (``Recipe.test_mirror``).
The test split is never used. The features are cached in ``--cache``, so a second call only trains heads.

Usage::

    CNN_STUDY_DATA=../shared/data python scripts/select_head.py vgg16_feature_extraction \\
        --backbone efficientnet_lite0 --cache features.pt --views 2 4 6 --label-smoothing 0 0.1
"""

from __future__ import annotations

import argparse
import itertools
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from cnn_study.datasets import DATASETS, Augmentation, BatchLoader, ImageData, Mirror
from cnn_study.files import atomic_torch_save
from cnn_study.models import create_model
from cnn_study.recipes import BACKBONES, STUDY_BACKBONE, get_recipe
from cnn_study.training import (
    TensorBatches,
    extract_features,
    fit_stage,
    loss_and_predictions,
    seed_everything,
    select_device,
)


def cached_features(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Features of every view of the fitting part, of the validation part and its mirror image (cached)."""
    settings = {
        "experiment": args.experiment,
        "backbone": args.backbone,
        "more_views": args.more_views,
        "per_class": args.per_class,
    }
    if args.cache.exists():
        cache = torch.load(args.cache, weights_only=True)
        if cache["settings"] != settings:
            raise SystemExit(
                f"{args.cache} holds the features for {cache['settings']}, not {settings}: "
                "pass another --cache file or delete this one."
            )
        return cache
    recipe = get_recipe(args.experiment).on_backbone(args.backbone)
    model = create_model(recipe.model, **recipe.model_kwargs)
    extractor = model.feature_extractor(folded=True)
    training = DATASETS[recipe.dataset](None)[0]
    if args.per_class:
        training = training.sample(args.per_class, seed=recipe.seed)
    fitting, validation = training.split(0.2, seed=recipe.seed)
    views = [(), *((view,) for view in recipe.cached_views), *[recipe.cached_views[-1:]] * args.more_views]

    def features(data: ImageData, augment: tuple[Augmentation, ...], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        loader = BatchLoader.for_model(data, model, device=device, augment=augment, seed=seed)
        return extract_features(extractor, loader, device)

    cache = {"settings": settings, **dict(zip(("val_features", "val_labels"), features(validation, (), recipe.seed)))}
    cache["val_mirror_features"], _ = features(validation, (Mirror(),), recipe.seed)
    for number, augment in enumerate(views):  # seeded as `run` seeds its views
        features_and_labels = features(fitting, augment, recipe.seed + number)
        cache[f"view{number}_features"], cache[f"view{number}_labels"] = features_and_labels
    atomic_torch_save(cache, args.cache)
    return cache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("experiment", help="a transfer experiment whose improved recipe caches features")
    parser.add_argument("--backbone", default=STUDY_BACKBONE, choices=BACKBONES, help="the pretrained base")
    parser.add_argument("--more-views", type=int, default=0, help="extra copies of the recipe's last random view")
    parser.add_argument("--cache", type=Path, required=True, help="file for the extracted features")
    parser.add_argument("--per-class", type=int, help="use this many training images per class (a quick check)")
    parser.add_argument("--views", type=int, nargs="+", help="numbers of cached views to compare (default: all)")
    parser.add_argument("--weight-decay", type=float, nargs="+", default=[None])
    parser.add_argument("--label-smoothing", type=float, nargs="+", default=[None])
    parser.add_argument("--dropout", type=float, nargs="+", default=[None])
    parser.add_argument("--epochs", type=int, nargs="+", default=[None])
    args = parser.parse_args()

    recipe, device = get_recipe(args.experiment).on_backbone(args.backbone), select_device()
    head_stage = recipe.stages[0]  # the stage that trains the head on the cached features
    cache = cached_features(args, device)
    view_count = sum(key.startswith("view") and key.endswith("_features") for key in cache)
    validation = TensorBatches(cache["val_features"], cache["val_labels"], 500)
    print(
        f"{'views':>5} {'decay':>6} {'smooth':>6} {'dropout':>7} {'epochs':>6}  {'val acc':>7}  {'val loss':>8}"
        f"  {'mirror-averaged':>15}"
    )
    for views, decay, smoothing, dropout, epochs in itertools.product(
        args.views or [view_count], args.weight_decay, args.label_smoothing, args.dropout, args.epochs
    ):
        decay = head_stage.weight_decay if decay is None else decay
        smoothing = head_stage.label_smoothing if smoothing is None else smoothing
        dropout = recipe.model_kwargs["dropout"] if dropout is None else dropout
        epochs = epochs or head_stage.epochs
        seed_everything(recipe.seed)
        model = create_model(recipe.model, **dict(recipe.model_kwargs, dropout=dropout))
        head = model.classifier_head()
        training = TensorBatches(
            torch.cat([cache[f"view{n}_features"] for n in range(views)]),
            torch.cat([cache[f"view{n}_labels"] for n in range(views)]),
            recipe.batch_size,
            shuffle=True,
            seed=recipe.seed,
        )
        stage = replace(head_stage, epochs=epochs, weight_decay=decay, label_smoothing=smoothing)
        history = fit_stage(head, training, stage, val_loader=validation, device=device, quiet=True)
        last = history.epochs[-1]
        head.eval()
        with torch.no_grad():  # test-time augmentation (Recipe.test_mirror): average with the mirror image's logits
            logits = (head(cache["val_features"]) + head(cache["val_mirror_features"])) / 2
        mirrored = (loss_and_predictions(logits, cache["val_labels"])[1] == cache["val_labels"]).float().mean()
        print(
            f"{views:>5} {decay:>6g} {smoothing:>6g} {dropout:>7g} {epochs:>6}  {last.val_accuracy:>7.2%}"
            f"  {last.val_loss:>8.4f}  {mirrored:>15.2%}",
            flush=True,
        )


if __name__ == "__main__":
    main()
