"""Names and paths the user chose are printed as written: a store under ``/data/[run1]/``, a task
``pick [left] cup`` or a stage ``lift [/] it`` is text, not Rich markup that loses its brackets or fails,
while the CLI's own styling ("[yellow]warning:[/]", "[bold]...[/]") is still applied."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import clustered_latents, synthetic_meta
from probe import columns as C
from probe.cli import main
from probe.console import console
from probe.store.writer import write_store

TASKS = ("pick [left] cup", "push [bold]box[/bold]")  # a tag Rich would read, and a styled-looking name
STAGES = ("reach [x]", "grasp", "lift [/] it")  # "[/]" alone is a MarkupError for Rich
LAYER = "trunk.[out]"
DATASET = " [cam0]"  # appended to each dataset name
WARNING = "frames of episode [e3] were skipped"


@pytest.fixture
def store(tmp_path: Path, monkeypatch) -> Path:
    """A small store whose directory, tasks, stages, datasets, layer and manifest warning hold brackets."""
    monkeypatch.setattr(console, "width", 400)  # no line of a long tmp path wraps
    meta = synthetic_meta(tasks=TASKS, stages=STAGES)
    meta[C.DATASET] = meta[C.DATASET] + DATASET
    path = tmp_path / "data" / "[run1]" / "store"
    write_store(path, meta, {LAYER: clustered_latents(meta)}, warnings=[WARNING])
    return path


def _run(capsys, argv: list[str]) -> str:
    code = main(argv)
    out = capsys.readouterr().out
    assert code == 0, out
    return out


def test_info_prints_the_path_names_and_warning_as_written(store, capsys):
    out = _run(capsys, ["info", str(store)])
    assert f"{store}  320 samples" in out  # the path in the bold heading
    for task in TASKS:
        assert f"│ {task} " in out, task  # a table cell
    assert "stages: " + ", ".join(STAGES) in out
    assert f"│ {LAYER} " in out
    assert f"warning: {WARNING}" in out and "[yellow]" not in out  # the label's markup still applied


def test_metrics_prints_the_store_layer_and_stages_as_written(store, capsys):
    out = _run(capsys, ["metrics", str(store), "--families", "mixing", "--bootstrap", "0", "--nulls", "0",
                        "--by", "stage"])
    squeezed = "".join(out.split())  # the table's title wraps at the table's width
    assert "".join(f"{store}  layer {LAYER}  n=320".split()) in squeezed
    for stage in STAGES:
        assert f" {stage} ┃" in out, stage  # a column header of the per-stage table
    assert f"note (store, {LAYER}):" in out


def test_index_and_retrieve_print_the_paths_tasks_and_samples_as_written(store, tmp_path, capsys):
    index = tmp_path / "indexes [x]" / "robot"
    out = _run(capsys, ["index", str(store), "--out", str(index), "--embodiment", "robot"])
    assert f"indexed 160 robot samples of layer '{LAYER}'" in out
    assert f"wrote index: {index}" in out

    query = f"human/{TASKS[0]}/0/5"
    out = _run(capsys, ["retrieve", "--index", str(index), "--sample-id", query])
    assert f"query 0: sample_id {query}, frame 5, embodiment human, task {TASKS[0]}, stage {STAGES[0]}" in out
    assert f"│ {TASKS[0]} / {STAGES[0]} " in out
    assert f"│ robot-data{DATASET}:" in out  # the episode cell: dataset:episode
    assert f"│ robot/{TASKS[0]}/" in out  # the sample cell
    assert f"--index '{index}' --eval" in out  # the next step, one line


def test_coverage_prints_the_path_layer_and_stage_names_as_written(store, capsys):
    out = _run(capsys, ["coverage", str(store)])
    assert f"{store} layer '{LAYER}': 160 robot states" in out
    for name in (*TASKS, *STAGES, f"human-data{DATASET}:"):
        assert f"│ {name}" in out, name


def test_cache_prints_its_directory_as_written(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(console, "width", 400)
    root = tmp_path / "cache [old]"
    root.mkdir()
    out = _run(capsys, ["cache", "--cache-dir", str(root)])
    assert out.startswith(f"{root}  ")
    out = _run(capsys, ["cache", "--cache-dir", str(root), "--clear"])
    assert out.startswith(f"cleared everything under {root}: ")
