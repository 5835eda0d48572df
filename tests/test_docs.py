"""The documentation site builds strictly, with every tutorial executed, and shows what it should."""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest
import yaml
from nbclient import NotebookClient

from cnn_study import exercises
from cnn_study.models import list_models, transfer_model
from cnn_study.recipes import STUDY_BACKBONE, STUDY_REPORTS, get_recipe
from cnn_study.results import results_folder

from .conftest import has_offline_extra, missing

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = sorted(path.stem for path in (ROOT / "tutorials").glob("*.py"))


#: The kernel the docs build executes the tutorials in: the wheel's environment, measured (tests/measured_kernel.py).
WHEEL_KERNEL = "cnn-study-wheel"


@pytest.fixture(scope="module")
def site(data_dir, wheel_environment, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the site once, with the notebook cache off so every tutorial really runs, each in a fresh kernel
    of the built wheel's environment that logs its time and peak memory to ``kernels.jsonl`` beside the site."""
    if not os.environ.get("CNN_STUDY_BACKBONE") and not has_offline_extra():
        missing("the transfer tutorials need VGG16 weights or the offline extra")
    folder = tmp_path_factory.mktemp("site")
    kernel = folder / "jupyter" / "kernels" / WHEEL_KERNEL
    kernel.mkdir(parents=True)
    argv = [str(wheel_environment.python), str(ROOT / "tests" / "measured_kernel.py"), str(folder / "kernels.jsonl")]
    spec = {"argv": [*argv, "-f", "{connection_file}"], "display_name": "cnn-study wheel", "language": "python"}
    (kernel / "kernel.json").write_text(json.dumps(spec))
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    config["docs_dir"] = str(ROOT / "docs")
    config["hooks"] = [str(ROOT / hook) for hook in config["hooks"]]
    for plugin in config["plugins"]:
        if isinstance(plugin, dict) and "mkdocs-jupyter" in plugin:
            plugin["mkdocs-jupyter"].update(cache=False, kernel_name=WHEEL_KERNEL)
    config_file = folder / "mkdocs.yml"
    config_file.write_text(yaml.safe_dump(config))
    scratch = folder / "tmp"  # the tutorials' runs land in its cnn-study-tutorials/ (`tutorial_runs`)
    scratch.mkdir()
    env = dict(
        os.environ,
        CNN_STUDY_BACKBONE=os.environ.get("CNN_STUDY_BACKBONE", "efficientnet_lite0"),
        CNN_STUDY_DATA=str(data_dir),
        JUPYTER_PATH=os.pathsep.join(filter(None, [str(folder / "jupyter"), os.environ.get("JUPYTER_PATH")])),
        TMPDIR=str(scratch),
    )
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(config_file),
            "--site-dir",
            str(folder / "site"),
        ],
        cwd=folder,  # the kernels start here: a stranger's notebook does not run inside the checkout
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert completed.returncode == 0, completed.stderr[-5000:]
    return folder / "site"


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tutorial_runs(site: Path) -> Path:
    """The results folders of the runs the tutorials made while the site built (their ``OUT``)."""
    return site.parent / "tmp" / "cnn-study-tutorials"


#: What a CIFAR-10 tutorial's on-page run (quick mode) must reach: at least 2,000 test images and a test accuracy
#: of its own (seeded, CPU) number on this machine less a margin; chance is 10%.
TUTORIAL_QUICK_FLOORS = {
    ("alexnet", "improved"): 0.55,  # tutorial 4: 61.15% of 2,000 (8,000 training images, 4 epochs)
    ("zfnet", "improved"): 0.55,  # tutorial 5: 63.20% of 2,000 (8,000 training images, 4 epochs)
    ("resnet", "seed"): 0.57,  # tutorial 7: 63.52% of 5,000 (20,000 training images, 4 epochs)
    ("fast_cifar", "improved"): 0.76,  # tutorial 10: 82.12% of 5,000 (20,000 training images, 4 epochs)
}


@pytest.mark.parametrize(("experiment", "recipe"), TUTORIAL_QUICK_FLOORS)
def test_the_cifar_tutorials_runs_learn_on_the_page(tutorial_runs: Path, experiment: str, recipe: str) -> None:
    folder = results_folder(get_recipe(experiment, recipe), tutorial_runs, quick=True)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["quick"] is True and metrics["test_size"] >= 2000
    assert metrics["test_accuracy"] >= TUTORIAL_QUICK_FLOORS[experiment, recipe]


#: What a transfer tutorial's quick run must reach on its 20 test photos (chance 50%), on the base the site
#: was built with: a smoke floor, not evidence (the end-to-end tests run these recipes on fewer photos).
TRANSFER_QUICK_FLOORS = {
    ("vgg16_dogs_vs_cats", "improved"): 0.75,  # tutorial 6: 100% of 20 on EfficientNet-Lite0
    ("vgg16_feature_extraction", "improved"): 0.55,  # tutorial 8: 60-65% of 20 on EfficientNet-Lite0
}


@pytest.mark.parametrize(("experiment", "recipe"), TRANSFER_QUICK_FLOORS)
def test_the_transfer_tutorials_quick_runs_learn(tutorial_runs: Path, experiment: str, recipe: str) -> None:
    ran = get_recipe(experiment, recipe).on_backbone(os.environ.get("CNN_STUDY_BACKBONE", STUDY_BACKBONE))
    metrics = json.loads((results_folder(ran, tutorial_runs, quick=True) / "metrics.json").read_text())
    assert metrics["quick"] is True and metrics["model"] == ran.model and metrics["test_size"] == 20
    assert metrics["test_accuracy"] >= TRANSFER_QUICK_FLOORS[experiment, recipe]


@pytest.mark.parametrize("tutorial", TUTORIALS)
def test_tutorial_page_shows_figures_and_no_errors(site: Path, tutorial: str) -> None:
    html = (site / "tutorials" / tutorial / "index.html").read_text()
    figures = re.findall(r'<img[^>]+src="data:image/png;base64', html)
    assert len(figures) >= 3, f"{tutorial}: only {len(figures)} figures"
    text = re.sub(r"<[^>]+>", " ", html)
    assert "Traceback" not in text and "Error:" not in text
    assert 'data-mime-type="application/vnd.jupyter.stderr" tabindex' not in html, "a cell wrote to stderr"


def test_api_page_documents_create_model(site: Path) -> None:
    html = (site / "api" / "models" / "index.html").read_text()
    assert 'id="cnn_study.models.create_model"' in html or 'id="cnn_study.models._registry.create_model"' in html
    assert "Build a registered model" in html


def test_every_architecture_page_has_a_summary_table(site: Path) -> None:
    for name in list_models():
        html = (site / "architectures" / name / "index.html").read_text()
        assert "Total params" in html and "Layer (type:depth-idx)" in html, name


def test_results_page_shows_the_published_runs(site: Path) -> None:
    page = (site / "results" / "index.html").read_text()
    assert "<table>" in page and "lenet5" in page and "figures/lenet5-improved.png" in page
    assert (site / "figures" / "lenet5-improved.png").stat().st_size > 10_000
    for report in STUDY_REPORTS.values():  # the study's words, and what each number measured
        cells = (
            f"<td>{html.escape(report.quote, quote=False)}</td>\n<td>{html.escape(report.measured, quote=False)}</td>"
        )
        assert cells in page, report


@pytest.mark.parametrize("tutorial", TUTORIALS)
def test_tutorial_page_opens_with_colab_notebook_and_source_links(site: Path, tutorial: str) -> None:
    html = (site / "tutorials" / tutorial / "index.html").read_text()
    links = re.search(r'<p class="notebook-links">(.*?)</p>', html, flags=re.S)
    assert links, f"{tutorial}: no notebook links"
    hrefs = dict((text, href) for href, text in re.findall(r'href="([^"]+)"[^>]*>([^<]+)</a>', links.group(1)))
    assert hrefs["Open in Colab"] == (
        f"https://colab.research.google.com/github/cnn-study/cnn-study/blob/gh-pages/dev/notebooks/{tutorial}.ipynb"
    )
    assert hrefs["View source"] == f"https://github.com/cnn-study/cnn-study/blob/main/tutorials/{tutorial}.py"
    notebook_file = (site / "tutorials" / tutorial / hrefs["Download notebook"]).resolve()
    assert notebook_file == site / "notebooks" / f"{tutorial}.ipynb"
    notebook = nbformat.read(notebook_file, as_version=4)
    nbformat.validate(notebook)
    install = notebook.cells[1]
    requirement = "cnn-study[tutorials] @ git+https://github.com/cnn-study/cnn-study@main"  # the dev site's
    assert install.cell_type == "code" and f'%pip install --quiet "{requirement}"' in install.source
    assert 'find_spec("cnn_study") is None' in install.source  # only where the package is missing
    assert "CNN_STUDY_QUICK" in notebook.cells[0].source and "GPU" in notebook.cells[0].source
    tutorial_code = [cell.source for cell in notebook.cells[2:] if cell.cell_type == "code"]
    assert any("cnn_study" in source for source in tutorial_code)  # the tutorial itself follows
    solutions = [cell.source for cell in notebook.cells if "<summary>Solution</summary>" in cell.source]
    assert len(solutions) == 2 and all("```python" in solution for solution in solutions)


#: What a free notebook service offers (Colab, Kaggle: about 12 GB of memory, 2 CPU cores): a tutorial whose
#: notebook needs more says so at its top.
FREE_SERVICE_MEMORY_MB = 12 * 1024


@pytest.fixture(scope="module")
def notebook_kernels(site: Path) -> list[dict]:
    """One record per kernel the docs build ran (tests/measured_kernel.py): its cells, time and peak memory."""
    return [json.loads(line) for line in (site.parent / "kernels.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("tutorial", TUTORIALS)
def test_each_downloaded_notebook_ran_top_to_bottom_from_the_wheel_in_a_kernel_of_its_own(
    site: Path, notebook_kernels: list[dict], wheel_environment, tutorial: str
) -> None:
    notebook = nbformat.read(site / "notebooks" / f"{tutorial}.ipynb", as_version=4)
    lesson = jupytext.read(ROOT / "tutorials" / f"{tutorial}.py")
    assert [cell.source for cell in notebook.cells[2:]] == [cell.source for cell in lesson.cells]  # after set-up
    code = [cell.source.strip() for cell in lesson.cells if cell.cell_type == "code"]
    [kernel] = [record for record in notebook_kernels if [cell.strip() for cell in record["cells"]] == code]
    assert Path(kernel["cnn_study"]).is_relative_to(wheel_environment.python.parents[1])  # the wheel's package
    print(f"{tutorial}: {kernel['seconds']:.0f} s, peak memory {kernel['peak_rss_mb']:,.0f} MB")  # for the record
    assert kernel["peak_rss_mb"] < FREE_SERVICE_MEMORY_MB, "more than a free notebook service has: say so at the top"


def test_the_notebooks_set_up_cells_install_nothing_where_the_package_is(
    site: Path, wheel_environment, monkeypatch, tmp_path
) -> None:
    setups = [nbformat.read(path, as_version=4).cells[:2] for path in sorted((site / "notebooks").glob("*.ipynb"))]
    sources = [[(cell.cell_type, cell.source) for cell in setup] for setup in setups]  # ids differ: cells are new
    assert len(setups) == len(TUTORIALS) and all(source == sources[0] for source in sources)
    check = nbformat.v4.new_code_cell("import os, cnn_study\nprint(cnn_study.__file__, os.environ['CNN_STUDY_QUICK'])")
    notebook = nbformat.v4.new_notebook(cells=[*setups[0], check])
    monkeypatch.setenv("JUPYTER_PATH", str(site.parent / "jupyter"))
    monkeypatch.delenv("CNN_STUDY_QUICK", raising=False)
    NotebookClient(
        notebook, kernel_name=WHEEL_KERNEL, timeout=120, resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = notebook.cells[1].outputs  # no %pip ran (the wheel's package was found): only setdefault's value
    assert [(output.output_type, output.get("data", {}).get("text/plain")) for output in outputs] == [
        ("execute_result", "'1'")
    ]
    package, quick = notebook.cells[2].outputs[0].text.split()
    assert Path(package).is_relative_to(wheel_environment.python.parents[1]) and quick == "1"


@pytest.mark.parametrize("tutorial", TUTORIALS)
def test_tutorial_page_ends_with_exercises_whose_solutions_are_folded(site: Path, tutorial: str) -> None:
    html = (site / "tutorials" / tutorial / "index.html").read_text()
    exercises = html[html.index('id="exercises"') :]
    folded = re.findall(r"<details>\s*<summary>Solution</summary>(.*?)</details>", exercises, flags=re.S)
    assert len(folded) == 2 and all('class="highlight' in solution or "<pre" in solution for solution in folded)
    assert exercises.count("replace ... with your answer") == 2  # the cells ran, waiting for an answer


def test_results_page_and_home_show_the_comparison_charts(site: Path) -> None:
    for page in ("results/index.html", "index.html"):
        html = (site / page).read_text()
        for chart in ("study-comparison", "accuracy-vs-cost"):
            [alt] = re.findall(rf'<img alt="([^"]+)" src="[./]*figures/{chart}.png"', html)
            assert len(alt) > 60, f"{page}: {chart} needs a real description"
    for chart in ("study-comparison", "accuracy-vs-cost"):
        assert (site / "figures" / f"{chart}.png").stat().st_size > 20_000


def test_tutorial_results_tables_render_as_html_tables(site: Path) -> None:
    html = (site / "tutorials" / "06_vgg16_dogs_vs_cats" / "index.html").read_text()
    assert re.search(r"<table>\s*<thead>\s*<tr>\s*<th>#</th>\s*<th>experiment</th>", html)


def _outputs(html: str) -> list[str]:
    """The text each executed cell printed, in page order."""
    blocks = re.findall(r'<div class="jp-RenderedText[^"]*"[^>]*>\s*<pre>(.*?)</pre>', html, flags=re.S)
    return [re.sub(r"<[^>]+>", "", block) for block in blocks]


TRANSFER_TUTORIALS = [name for name in TUTORIALS if name.startswith(("06_", "08_", "09_"))]


@pytest.mark.parametrize("tutorial", TRANSFER_TUTORIALS)
def test_transfer_tutorials_name_the_base_that_ran(site: Path, tutorial: str) -> None:
    html = (site / "tutorials" / tutorial / "index.html").read_text()
    base = os.environ.get("CNN_STUDY_BACKBONE", STUDY_BACKBONE)
    outputs = _outputs(html)
    assert outputs[0].startswith(f"pretrained base on this page: {base} ("), tutorial
    assert any(f"quick run (a subset: not the recipe's result), {transfer_model(base)}" in output for output in outputs)
    text = " ".join(re.sub(r"<[^>]+>", " ", html).split())
    assert "made without internet on EfficientNet-Lite0" in text  # the published runs: not this page's base
    assert "every number and figure below comes from" not in text


@pytest.mark.parametrize("tutorial", TUTORIALS)
def test_quick_run_accuracies_come_with_their_test_set_size_and_chance(site: Path, tutorial: str) -> None:
    html = (site / "tutorials" / tutorial / "index.html").read_text()
    lines = [line for output in _outputs(html) for line in output.splitlines()]
    quick = [line for line in lines if "quick" in line.lower() and re.search(r"\d%", line)]
    assert quick, f"{tutorial}: the site is built in quick mode, but no quick run's result is printed"
    for line in quick:
        assert re.search(r"on [\d,]+ test images \(chance \d+%\)", line), f"{tutorial}: {line}"
        assert "not the recipe's result" in line, f"{tutorial}: {line}"


def _executed_output(page: str) -> str:
    """The text of all of a built tutorial page's cell outputs, without its prose or code: what the code printed
    (`_outputs` reads only that) and the tables and Markdown it displayed."""
    outputs = []
    for chunk in page.split("jp-Cell-outputArea")[1:]:
        chunk = re.split(r'<div class="jp-Cell ', chunk, maxsplit=1)[0]
        outputs.append(html.unescape(re.sub(r"<[^>]+>", " ", re.sub(r"<img[^>]*>", " ", chunk))))
    return "\n".join(outputs)


def _is_printed(answer: object, output: str) -> bool:
    """Whether ``output`` shows ``answer``: a number of 100 or more with or without thousands separators
    (smaller ones occur everywhere), a fraction to two or four places or as a percentage, a string as it is;
    a list or dict when every one of its values is shown, so that the whole answer could be copied."""
    if isinstance(answer, (list, tuple, dict)):
        values = list(answer.values() if isinstance(answer, dict) else answer)
        return bool(values) and all(_is_printed(value, output) for value in values)
    if isinstance(answer, bool):
        forms = []
    elif isinstance(answer, int):
        forms = [str(answer), f"{answer:,}"] if abs(answer) >= 100 else []
    elif isinstance(answer, float):
        forms = [f"{answer:.2f}", f"{answer:.4f}", f"{answer:.1%}", f"{answer:.2%}"]
    else:
        forms = [str(answer)]
    return any(re.search(r"(?<![\d.,])" + re.escape(form) + r"(?![\d]|[.,]\d)", output) for form in forms)


@pytest.mark.parametrize("tutorial", TUTORIALS)
def test_no_exercise_answer_is_printed_on_its_page(site: Path, tutorial: str) -> None:
    """An exercise is to compute or predict, not to copy: its answer appears in none of the page's outputs."""
    output = _executed_output((site / "tutorials" / tutorial / "index.html").read_text())
    number = int(tutorial.split("_")[0])
    for exercise in (exercise for exercise in exercises.EXERCISES.values() if exercise.tutorial == number):
        assert not _is_printed(exercise.answer(), output), f"{tutorial}: the answer of {exercise.name} is printed"


def test_the_printed_answer_check_finds_numbers_as_pages_print_them() -> None:
    output = "total params: 1,179,776 | lr 0.0854 | ['Shirt'] | 42 | 58.05%"
    assert _is_printed(1179776, output) and _is_printed(0.08536, output) and _is_printed("Shirt", output)
    assert _is_printed(0.5805, output) and _is_printed([1179776, "Shirt"], output)
    assert not _is_printed(117977, output) and not _is_printed(42, output)  # part of a number; too small to tell
    assert not _is_printed([1179776, 589952], output)  # one value of the two to compute
