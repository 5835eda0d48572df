"""MkDocs hooks: pages generated from the package at build time, so they never go stale.

* ``architectures/<model>.md``: one page per registered model with its torchinfo summary;
* ``results.md`` and the home page: the ``<!-- results-table -->`` placeholder becomes the
  table of published full runs, ``<!-- results-spread -->`` the accuracy over seeds of the recipes published
  with several (`cnn_study.results.format_seed_spreads`), ``<!-- results-study -->`` what the study reported, in its
  words and with what each number measured (`cnn_study.recipes.STUDY_REPORTS`), and ``<!-- results-curves -->``
  the training curves;
* ``notebooks/<tutorial>.ipynb``: each tutorial as a notebook (jupytext), with a first cell that
  installs the package where it is missing (Colab), and each tutorial page opens with three links:
  Open in Colab, Download notebook, View source.

The Colab link opens the notebook from the ``gh-pages`` branch that ``.github/workflows/docs.yml``
publishes with mike, in the folder of the version being built (``$DOCS_VERSION``, ``dev`` by default).
"""

from __future__ import annotations

import io
import logging
import os
import re
from pathlib import Path

import jupytext
import nbformat
from matplotlib.figure import Figure
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

from cnn_study import visualize
from cnn_study.models import create_model, get_model_info, is_transfer_model, list_models, summary
from cnn_study.recipes import STUDY_REPORTED, STUDY_REPORTS, experiments_using, list_experiments, study_accuracy
from cnn_study.results import (
    format_results,
    format_seed_spreads,
    held_out_curve,
    load_results,
    published_runs,
    run_seconds,
)

log = logging.getLogger("mkdocs.hooks.cnn_study")

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"

#: The notebook's first cells: how to run it, and the package where it is not installed (Colab).
SETUP_MARKDOWN = """**Running this notebook.** It installs cnn-study first if it is missing (on Colab, say): the version
this page documents ({version}). It runs in
*quick mode*: a few hundred images and one or two epochs, so that every cell finishes in minutes on a CPU;
its numbers show that the code works, not what the model can do (the full runs' results are read from the
package). For full-size runs set `CNN_STUDY_QUICK=0` in the next cell, and on Colab choose *Runtime → Change
runtime type → GPU*: the package picks the GPU by itself. The transfer tutorials (6, 8, 9) download
torchvision's VGG16 weights; set `CNN_STUDY_BACKBONE=efficientnet_lite0` for the offline base."""
SETUP_CODE = """import importlib.util
import os

if importlib.util.find_spec("cnn_study") is None:  # outside a checkout or an environment that has it
    %pip install --quiet "{requirement}"
os.environ.setdefault("CNN_STUDY_QUICK", "1")  # "0": full runs (use a GPU)"""


def install_requirement(version: str, repo_url: str) -> str:
    """What a notebook of the site's ``version`` installs: that release from PyPI, or for the development
    site (``dev``) the main branch of the repository. The ``tutorials`` extra is what the tutorials import.

    >>> install_requirement("0.2.0", "https://github.com/cnn-study/cnn-study")
    'cnn-study[tutorials]==0.2.0'
    >>> install_requirement("dev", "https://github.com/cnn-study/cnn-study/")
    'cnn-study[tutorials] @ git+https://github.com/cnn-study/cnn-study@main'
    """
    if re.fullmatch(r"\d+(\.\d+)*([ab]|rc)?\d*", version):
        return f"cnn-study[tutorials]=={version}"
    return f"cnn-study[tutorials] @ git+{repo_url.rstrip('/')}@main"


def _notebook(tutorial: Path, config: MkDocsConfig) -> str:
    """The tutorial as a notebook with the set-up cells first, validated against the notebook schema."""
    version = os.environ.get("DOCS_VERSION", "dev")
    notebook = jupytext.read(tutorial)
    notebook.cells[:0] = [
        nbformat.v4.new_markdown_cell(SETUP_MARKDOWN.format(version=version)),
        nbformat.v4.new_code_cell(SETUP_CODE.format(requirement=install_requirement(version, config.repo_url))),
    ]
    nbformat.validate(notebook)
    return nbformat.writes(notebook)


def _notebook_links(page: Page, config: MkDocsConfig) -> str:
    stem = Path(page.file.src_uri).stem
    version = os.environ.get("DOCS_VERSION", "dev")
    repository = config.repo_url.rstrip("/").removeprefix("https://github.com/")
    colab = f"https://colab.research.google.com/github/{repository}/blob/gh-pages/{version}/notebooks/{stem}.ipynb"
    depth = page.url.rstrip("/").count("/") + 1
    download = "../" * depth + f"notebooks/{stem}.ipynb"
    source = f"{config.repo_url.rstrip('/')}/blob/main/tutorials/{stem}.py"
    links = [
        f'<a class="md-button md-button--primary" href="{colab}">Open in Colab</a>',
        f'<a class="md-button" href="{download}" download>Download notebook</a>',
        f'<a class="md-button" href="{source}">View source</a>',
    ]
    return f'<p class="notebook-links">{" ".join(links)}</p>\n'


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


def _parameters(metrics: dict) -> int:
    """Parameters of a published run's model (runs record them since issue 18; older ones are rebuilt)."""
    kwargs = dict(metrics["recipe_settings"]["model_kwargs"])
    if is_transfer_model(metrics["model"]):
        kwargs["base_weights"] = None  # the count is the architecture's
    return sum(parameter.numel() for parameter in create_model(metrics["model"], **kwargs).parameters())


#: The charts of the published runs, with their alt text, for the ``<!-- results-charts -->`` placeholder.
CHARTS = {
    "study-comparison": "Bar chart: for each of the nine experiments, the accuracy the study reported next to "
    "the test accuracy of our seed and improved runs.",
    "accuracy-vs-cost": "Two scatter plots of test accuracy, one point per published run labelled with its "
    "experiment and recipe: against the number of parameters, and against the run's training time, both on "
    "logarithmic axes.",
}


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
    for tutorial in sorted(TUTORIALS.glob("*.py")):
        files.append(File.generated(config, f"notebooks/{tutorial.stem}.ipynb", content=_notebook(tutorial, config)))
    runs = published_runs()
    results = [
        dict(row, parameters=row.get("parameters") or _parameters(row), seconds=run_seconds(row)) for row, _ in runs
    ]
    reported = {recipe.experiment: study_accuracy(recipe.experiment) for recipe in list_experiments()}
    for name, figure in (
        ("study-comparison", visualize.study_comparison(results, reported)),
        ("accuracy-vs-cost", visualize.accuracy_vs_cost(results)),
    ):
        files.append(File.generated(config, f"figures/{name}.png", content=_png(figure)))
    for metrics, history in runs:
        title = f"{metrics['title']} ({metrics['recipe']})"
        content = _png(visualize.training_curves(history, title=title, held_out=held_out_curve(metrics)))
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
    if "<!-- results-charts -->" in markdown:
        charts = [f"![{alt}]({prefix}figures/{name}.png)" for name, alt in CHARTS.items()]
        markdown = markdown.replace("<!-- results-charts -->", "\n\n".join(charts))
    if "<!-- results-spread -->" in markdown:
        markdown = markdown.replace("<!-- results-spread -->", format_seed_spreads())
    if "<!-- results-study -->" in markdown:
        rows = ["| # | the study's words | what the numbers measured |", "|---|---|---|"]
        rows += [f"| {number} | {report.quote} | {report.measured} |" for number, report in STUDY_REPORTS.items()]
        markdown = markdown.replace("<!-- results-study -->", "\n".join(rows))
    if "<!-- results-curves -->" in markdown:
        figures = [
            f"### {m['experiment']}. {m['title']} ({m['recipe']})\n\n"
            f"![training curves]({prefix}figures/{m['name']}-{m['recipe']}.png)\n"
            for m in results
        ]
        markdown = markdown.replace("<!-- results-curves -->", "\n".join(figures))
    return markdown


def on_page_content(html: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Open every tutorial page with its Colab, notebook and source links."""
    if page.file.src_uri.startswith("tutorials/") and page.file.src_uri.endswith(".py"):
        return _notebook_links(page, config) + html
    return html
