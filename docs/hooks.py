"""MkDocs hooks: pages generated from the package at build time, so they never go stale.

* ``architectures/<model>.md``: one page per registered model with its torchinfo summary;
* ``results.md`` and the home page: the ``<!-- results-table -->`` placeholder becomes the
  table of published full runs, and ``<!-- results-curves -->`` their training curves.
"""

from __future__ import annotations

import io
import logging

from matplotlib.figure import Figure
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

from cnn_study import visualize
from cnn_study.models import create_model, get_model_info, is_transfer_model, list_models, summary
from cnn_study.recipes import STUDY_REPORTED, experiments_using
from cnn_study.results import format_results, load_history, load_results

log = logging.getLogger("mkdocs.hooks.cnn_study")


def _offline_extra_installed() -> bool:
    try:
        import efficientnet_lite_pytorch  # noqa: F401
    except ImportError:
        return False
    return True


def _documented_models() -> list[str]:
    return [name for name in list_models() if _offline_extra_installed() or "efficientnet" not in name]


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    """Fill the Architectures section of the navigation with one page per model."""
    for index, entry in enumerate(config.nav):
        if isinstance(entry, dict) and entry.get("Architectures") == "architectures/index.md":
            pages = [{"Overview": "architectures/index.md"}]
            pages += [{name: f"architectures/{name}.md"} for name in _documented_models()]
            config.nav[index] = {"Architectures": pages}
    return config


def _architecture_page(name: str) -> str:
    info = get_model_info(name)
    kwargs = {"base_weights": None} if is_transfer_model(name) else {}
    stats = summary(name, depth=3, **kwargs)
    model = create_model(name, **kwargs)
    docstring = (type(model).__doc__ or "").strip().split("\n")[0]
    experiments = experiments_using(name)
    lines = [
        f"# {name}",
        "",
        f"{docstring}",
        "",
        "| property | value |",
        "|---|---|",
        f"| reference | {info.paper} ({info.year}) |",
        f"| input | {' x '.join(map(str, model.input_size))} |",
        f"| outputs | {info.num_classes} |",
        f"| parameters | {stats.total_params:,} ({stats.trainable_params:,} trainable) |",
        f"| multiply-adds per image | {stats.total_mult_adds / 1e6:,.1f} M |",
        f"| experiments | {', '.join(map(str, experiments))} |",
        f"| the study reported | {'; '.join(f'experiment {n}: {STUDY_REPORTED[n]}' for n in experiments)} |",
        "",
        f"```python\nfrom cnn_study.models import create_model\nmodel = create_model({name!r})\n```",
        "",
    ]
    if kwargs:
        lines += [
            "The summary shows the architecture only (`base_weights=None`); the trained base is loaded by default.",
            "",
        ]
    lines += [
        "## torchinfo summary",
        "",
        "```text",
        str(stats),
        "```",
        "",
        "## About the architecture",
        "",
        f"::: {info.builder.__module__}",
        "    options:",
        "      members: false",
        "      show_root_heading: false",
        "      show_root_toc_entry: false",
    ]
    return "\n".join(lines)


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the generated architecture pages and result figures."""
    rows = []
    for name in _documented_models():
        log.info("generating architecture page for %s", name)
        files.append(File.generated(config, f"architectures/{name}.md", content=_architecture_page(name)))
        info = get_model_info(name)
        rows.append(f"| [{name}]({name}.md) | {info.paper} | {info.year} | {' x '.join(map(str, info.input_size))} |")
    overview = [
        "# Architectures",
        "",
        "Generated from the model registry when the site is built.",
        "",
        "| model | reference | year | input |",
        "|---|---|---|---|",
        *rows,
    ]
    files.append(File.generated(config, "architectures/index.md", content="\n".join(overview)))
    for metrics in load_results():
        history = load_history(metrics["name"], metrics["recipe"])
        title = f"{metrics['title']} ({metrics['recipe']})"
        content = _png(visualize.training_curves(history, title=title))
        files.append(File.generated(config, f"figures/{metrics['name']}-{metrics['recipe']}.png", content=content))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Replace the results placeholders with the table and curves of the published runs."""
    if "<!-- results-" not in markdown:
        return markdown
    results = load_results()
    prefix = "../" * page.file.src_uri.count("/")
    if "<!-- results-table -->" in markdown:
        markdown = markdown.replace("<!-- results-table -->", format_results(results, markdown=True))
    if "<!-- results-curves -->" in markdown:
        figures = [
            f"### {m['experiment']}. {m['title']} ({m['recipe']})\n\n"
            f"![training curves]({prefix}figures/{m['name']}-{m['recipe']}.png)\n"
            for m in results
        ]
        markdown = markdown.replace("<!-- results-curves -->", "\n".join(figures))
    return markdown
