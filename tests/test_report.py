"""The report: files, numbers, verdict, gates and the bad inputs named in the task."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import clustered_latents, synthetic_meta
from probe import columns as C
from probe.cli import main
from probe.errors import ConfigError, LayerNotFoundError, OutputExistsError
from probe.projection.layout import ProjectionConfig
from probe.report.config import ReportConfig
from probe.report.gates import parse_thresholds
from probe.report.build import build_report
from probe.measure.suite import known_metric_names
from probe.report.verdicts import verdict
from probe.store.writer import write_store

STEPS = ((100, 6.0), (200, 3.0), (300, 0.3))  # training step, distance between embodiments (alignment grows)
FAST_UMAP = ProjectionConfig(n_epochs=40, n_neighbors=10, max_points=80)
needs_suite = pytest.mark.skipif(not known_metric_names(), reason="the metrics suite (probe.measure.suite) is not installed")


def eval_config():
    """A quick metrics configuration (few bootstrap replicates) when the suite is installed."""
    try:
        from metrics.spec import MetricsConfig
    except ImportError:
        return None
    return MetricsConfig(bootstrap=3, null_repeats=1, k=20, by="stage",
                         metrics=("ilisi", "kbet", "clisi", "silhouette_stage", "stage_transfer_acc_robot_to_human"))


def quick_eval():
    """The fewest metrics the report's logic needs, without intervals (tests of other parts)."""
    try:
        from metrics.spec import MetricsConfig
    except ImportError:
        return None
    return MetricsConfig(bootstrap=0, null_repeats=1, k=20, by="stage", metrics=("ilisi",))


def make_stores(root: Path, *, dataset_suffix: str = "", layers=("block0", "block1")) -> list[Path]:
    meta = synthetic_meta(n_episodes=2, frames=12)
    if dataset_suffix:
        meta[C.DATASET] = meta[C.DATASET] + dataset_suffix
    paths = []
    for step, shift in STEPS:
        X = {layer: clustered_latents(meta, dim=12, shift=shift * (i + 1) / len(layers), seed=i)
             for i, layer in enumerate(layers)}
        path = root / f"step-{step}"
        write_store(path, meta, X, provenance={"step": step, "recipe": "co-trained"})
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> list[Path]:
    return make_stores(tmp_path_factory.mktemp("stores"))


@pytest.fixture(scope="module")
def report(stores, tmp_path_factory):
    out = tmp_path_factory.mktemp("reports") / "r"
    config = ReportConfig(projection=FAST_UMAP, cache_dir=tmp_path_factory.mktemp("cache"),
                          eval_config=eval_config())
    return build_report([stores[2], stores[0], stores[1]], out, config)  # given out of order on purpose


def test_report_writes_three_files_with_checkpoints_in_step_order(report):
    out = report.out
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "report.html", "summary.md"]
    doc = json.loads((out / "metrics.json").read_text())
    assert [c["step"] for c in doc["checkpoints"]] == [100, 200, 300]
    assert [c["label"] for c in doc["checkpoints"]] == ["co-trained step 100", "co-trained step 200",
                                                        "co-trained step 300"]
    assert doc["layers"] == ["block0", "block1"] and doc["headline_layer"] == "block1"
    # the one default-layer rule (the last), said in the notes (which `probe report` prints)
    assert ("headline layer block1 (the selected layers' last of 2: block0, block1; --headline-layer picks another)"
            in doc["notes"])
    # layouts: one per checkpoint at the headline layer, plus the other layer of the last checkpoint
    assert len(doc["layouts"]) == 4
    assert all(l["trustworthiness"] > 0.8 for l in doc["layouts"])
    assert not any(p.name.startswith(".") for p in out.parent.iterdir())  # atomic: no temporaries left


def test_html_is_self_contained(report):
    page = (report.out / "report.html").read_text()
    assert page.count("Plotly.newPlot(") >= 4
    # plotly.js is inlined exactly once, and nothing is fetched from the network
    from plotly.offline import get_plotlyjs

    js = get_plotlyjs()
    assert page.count(js) == 1
    ours = page.replace(js, "")  # plotly.js itself mentions a CDN (for geo maps we never draw)
    assert not re.search(r"<script[^>]+src=", ours)
    assert "cdn.plot.ly" not in ours and "<link" not in ours and "https://" not in ours
    assert "Verdict" in page and "co-trained step 300" in page
    assert "null: the value with labels shuffled between whole (episode, stage) runs" in page  # nulls explained


def test_retrieval_examples_are_the_retrievers_clips(report):
    """One clip per human episode, best first: the selection the dashboard makes for a clicked frame."""
    meta = report.data.checkpoints[-1].store.meta
    assert len(report.data.examples) == 3
    for ex in report.data.examples:
        rows = [m.row for m in ex.matches]
        assert len(rows) == 4 and (meta[C.EMBODIMENT].iloc[rows] == "human").all()
        assert len(set(C.episode_keys(meta.iloc[rows]))) == 4
        sims = [float(m.caption.rsplit("sim ", 1)[1]) for m in ex.matches]
        assert sims == sorted(sims, reverse=True)


@needs_suite
def test_metric_order_follows_the_one_headline_list():
    from metrics.spec import headline_metrics
    from probe.report.assembly import ReportData

    head = headline_metrics()
    assert head[:3] == ("ilisi", "kbet", "knn_embodiment_mixing") and len(set(head)) == len(head)
    data = ReportData([], [], "l", records={("a", "l"): {"metrics": {n: {} for n in ("zz", head[2], head[0], "aa")}}})
    assert data.metric_names() == [head[0], head[2], "aa", "zz"]
    assert data.headline_metrics() == [head[0], head[2]]


def test_summary_is_a_markdown_table(report):
    md = (report.out / "summary.md").read_text()
    assert md.startswith("## Embodiment alignment report")
    if known_metric_names():
        table = [line for line in md.splitlines() if line.startswith("| co-trained step")]
        assert len(table) == 3 and all(line.count("|") == table[0].count("|") for line in table)
    else:
        assert "metrics not available" in md


def test_summary_says_which_labels_each_null_shuffles(report):
    from probe.report.summary import null_legend

    legend = null_legend(["ilisi", "clisi", "silhouette_stage", "kendall_tau", "mmd_rbf"])
    assert legend == ["null of ilisi, mmd_rbf: value with embodiment labels shuffled",
                      "null of clisi, silhouette_stage: value with stage labels shuffled within each task",
                      "null of kendall_tau: value with frame order shuffled within each episode"]
    md = (report.out / "summary.md").read_text()
    if known_metric_names():
        values = next(line for line in md.splitlines() if line.startswith("Values: "))
        names = report.data.headline_metrics()[:8]
        # the legend names what the cells show: an interval only where a cell has one, the null where one has it
        cells = [c for line in md.splitlines() if line.startswith("| co-trained step") for c in line.split("|")[4:-1]]
        shown = ("estimate" + (" [95% interval]" if any("[" in c for c in cells) else "")
                 + (" (null N), N the null baseline" if any("(null " in c for c in cells) else ""))
        assert values == f"Values: {shown}" + "".join(f"; {x}" for x in null_legend(names)) + "."
        assert "[95% interval]" not in values  # no metric of this report has a calibrated interval
        assert "null: value with embodiment labels shuffled" not in md  # the old legend, wrong for stage metrics


@needs_suite
def test_every_output_says_how_its_intervals_were_made(report):
    """Replicates and mode of the intervals, from the configuration the metrics ran with (3 'refit' here)."""
    doc = json.loads((report.out / "metrics.json").read_text())
    assert doc["intervals"] == {"replicates": eval_config().bootstrap, "mode": "refit", "level": 0.95}
    line = "Intervals (95%) and p-values of changes: 3 'refit' replicates (each recomputes every metric"
    assert line in (report.out / "summary.md").read_text()
    assert line in html.unescape((report.out / "report.html").read_text())
    assert "probe metrics uses 30 'refit' replicates by default" in (report.out / "summary.md").read_text()


def test_detail_picks_the_checkpoint_measured_at_every_layer(stores, tmp_path):
    """--detail: the named store gets every layer, the retrieval examples and the coverage, and the headings say so;
    by default the last checkpoint does. A store not in the report is refused before any work."""
    config = dict(projection=ProjectionConfig(method="pca"), cache_dir=tmp_path / "c", retrieval_queries=1,
                  eval_config=quick_eval())
    first = build_report(stores, tmp_path / "first", ReportConfig(detail=stores[0], **config))
    default = build_report(stores, tmp_path / "last", ReportConfig(**config))
    for result, label in ((first, "co-trained step 100"), (default, "co-trained step 300")):
        data = result.data
        assert data.detailed.label == label
        assert {cp for cp, layer in data.layouts if layer == "block0"} == {label}
        if known_metric_names():
            assert {cp for cp, layer in data.records if layer == "block0"} == {label}
        page = (result.out / "report.html").read_text()
        for heading in (f"Layers of {label}", f"Metrics across layers ({label})", f"Coverage gaps ({label}",
                        f"Retrieval examples ({label}", f"every layer measured for {label}"):
            assert heading in page or (heading.startswith("Metrics") and not known_metric_names())
        assert json.loads((result.out / "metrics.json").read_text())["detail"] == label
    with pytest.raises(ConfigError, match="--detail .* is not one of the report's stores"):
        build_report(stores[1:], tmp_path / "never", ReportConfig(detail=stores[0], **config))
    assert not (tmp_path / "never").exists()


@needs_suite
def test_metrics_and_verdict_follow_alignment(report):
    doc = json.loads((report.out / "metrics.json").read_text())
    assert doc["metrics_available"]
    by_cp = {r["checkpoint"]: r for r in doc["records"] if r["layer"] == "block1"}
    first, last = by_cp["co-trained step 100"], by_cp["co-trained step 300"]
    assert last["metrics"]["ilisi"]["value"] > first["metrics"]["ilisi"]["value"]
    v_first, v_last = verdict(first), verdict(last)
    assert v_last.ratio > v_first.ratio
    assert v_first.status == "separate" and v_last.status in ("shared", "partly shared")
    assert "ilisi" in (report.out / "summary.md").read_text()


@needs_suite
def test_metrics_without_interval_say_why_in_every_output(report):
    """ilisi and kbet report no interval (not calibrated): the JSON, the page and the summary say so."""
    doc = json.loads((report.out / "metrics.json").read_text())
    for name in ("ilisi", "kbet"):
        entry = doc["records"][0]["metrics"][name]
        assert entry["ci"] is None and entry["interval_note"].startswith("not calibrated: coverage")
    page = (report.out / "report.html").read_text()
    assert "ilisi: no interval (not calibrated: coverage" in page
    summary = (report.out / "summary.md").read_text()
    assert ("No interval for ilisi, kbet, clisi, silhouette_stage, stage_transfer_acc_robot_to_human: not calibrated"
            in summary)


def test_mixed_datasets_are_said(stores, tmp_path):
    other = make_stores(tmp_path / "other", dataset_suffix="-v2")
    result = build_report([stores[0], other[2]], tmp_path / "r",
                          ReportConfig(projection=ProjectionConfig(method="pca"), cache_dir=tmp_path / "c",
                                       retrieval_queries=0, eval_config=quick_eval()))
    notes = json.loads((tmp_path / "r" / "metrics.json").read_text())["notes"]
    assert any("DIFFERENT datasets" in n and "human-data-v2" in n for n in notes)
    assert "DIFFERENT datasets" in (tmp_path / "r" / "report.html").read_text()
    assert result.data.checkpoints[0].label != result.data.checkpoints[1].label  # same step: labels made unique


def test_layer_missing_from_one_store(stores, tmp_path):
    odd = make_stores(tmp_path / "odd", layers=("block0", "head"))[0]
    with pytest.raises(LayerNotFoundError) as err:
        build_report([stores[0], odd], tmp_path / "r", ReportConfig(layers=("block1",)))
    message = str(err.value)
    assert "layer 'block1' not found" in message and str(odd) in message and "block0" in message
    assert not (tmp_path / "r").exists()


def test_existing_output_is_refused_unless_overwrite(stores, tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(OutputExistsError, match="already exists.*--overwrite"):
        build_report(stores[:1], out, ReportConfig(projection=ProjectionConfig(method="pca")))
    assert (out / "keep.txt").exists()
    config = ReportConfig(projection=ProjectionConfig(method="pca"), overwrite=True, cache_dir=tmp_path / "c",
                          eval_config=quick_eval())
    with pytest.raises(OutputExistsError, match="is not a report directory written by this toolkit"):
        build_report(stores[:1], out, config)  # --overwrite replaces a report, never a user's folder
    assert (out / "keep.txt").exists()
    (out / "keep.txt").unlink()
    build_report(stores[:1], out, config)  # an empty folder: replaced
    build_report(stores[:1], out, config)  # a report: replaced
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "report.html", "summary.md"]


def test_fail_under_parsing():
    assert parse_thresholds(["ilisi=0.5", " kbet = 0.2"], "--fail-under") == (("ilisi", 0.5), ("kbet", 0.2))
    for bad in ("ilisi", "ilisi=high", "=1"):
        with pytest.raises(ConfigError, match="--fail-under expects METRIC=NUMBER"):
            parse_thresholds([bad], "--fail-under")


@pytest.mark.parametrize("flag, item, message", [
    ("--fail-under", "ilisi=1.5", r"--fail-under ilisi=1.5: ilisi lies in \[0, 1\], so this gate can never pass"),
    ("--fail-under", "ilisi=-0.1", r"ilisi lies in \[0, 1\], so this gate can never fail"),
    ("--fail-under", "embodiment_probe_acc=1.2", r"lies in \[0, 1\], so this gate can never fail"),  # lower is better
    ("--fail-under", "frechet_distance=-1", r"frechet_distance lies in \[0, inf\), so this gate can never pass"),
    ("--max-drop", "kbet=2", r"--max-drop kbet=2: kbet lies in \[0, 1\], so it cannot drop by more than 1"),
])
def test_gates_outside_the_metric_range_are_refused(flag, item, message):
    with pytest.raises(ConfigError, match=message):
        parse_thresholds([item], flag)
    assert parse_thresholds(["ilisi=1", "frechet_distance=1e6", "cka_debiased=-1"], "--fail-under")  # edges and open
    assert parse_thresholds(["kbet=1"], "--max-drop")


def test_cli_refuses_an_out_of_range_gate_with_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path / "no-store"), "--out", str(tmp_path / "r"), "--fail-under", "ilisi=1.5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ilisi lies in [0, 1]" in err and not (tmp_path / "r").exists()


@needs_suite
def test_cli_checks_the_gate_ranges_once_before_any_work(tmp_path, capsys, monkeypatch):
    import probe.report.assembly
    import probe.report.gates

    calls = []
    check = probe.report.gates.check_gate_ranges

    def counted(*args):
        calls.append(args)
        return check(*args)

    for module in (probe.report.gates, probe.report.assembly):
        monkeypatch.setattr(module, "check_gate_ranges", counted)
    argv = ["report", str(tmp_path / "no-store"), "--out", str(tmp_path / "r")]
    # a gate that can pass: checked once (it ran three times: once per parsed flag, again in build_report), then the
    # missing store stops the report
    assert main([*argv, "--fail-under", "ilisi=0.5"]) == 2
    assert "store '" in capsys.readouterr().err
    assert calls == [((("ilisi", 0.5),), ())]
    calls.clear()
    assert main([*argv, "--fail-under", "ilisi=1.5"]) == 2  # one that never passes: refused by that one check
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ilisi lies in [0, 1], so this gate can never pass" in err
    assert len(calls) == 1 and not (tmp_path / "r").exists()


def test_fail_under_unknown_metric_lists_known_names(stores, tmp_path):
    with pytest.raises(ConfigError) as err:
        build_report(stores[:1], tmp_path / "r", ReportConfig(fail_under=(("ilsi", 1.0),)))
    message = str(err.value)
    if known_metric_names():
        assert "unknown metric 'ilsi'" in message and "ilisi" in message and "kbet" in message
    else:
        assert "metrics not available" in message
    assert not (tmp_path / "r").exists()  # refused before doing any work
    code = main(["report", str(stores[0]), "--out", str(tmp_path / "r"), "--fail-under", "ilsi=1"])
    assert code == 2


@needs_suite
def test_fail_under_gates_the_exit_code(stores, tmp_path):
    args = ["report", str(stores[2]), "--projection", "pca", "--cache", str(tmp_path / "c"), "--bootstrap", "0",
            "--metrics", "kbet"]
    assert main(args + ["--out", str(tmp_path / "ok"), "--fail-under", "ilisi=0.5"]) == 0
    assert main(args + ["--out", str(tmp_path / "bad"), "--fail-under", "ilisi=1"]) == 1
    doc = json.loads((tmp_path / "bad" / "metrics.json").read_text())
    assert doc["failed"] and doc["fail_under"][0]["metric"] == "ilisi" and not doc["fail_under"][0]["passed"]
    assert "FAIL" in (tmp_path / "bad" / "summary.md").read_text()


def test_fail_under_follows_the_metric_direction(stores, tmp_path):
    """embodiment_probe_acc is lower-is-better (0.5 = mixed): the gate fails when it is above the value."""
    args = ["report", str(stores[2]), "--projection", "pca", "--cache", str(tmp_path / "c"), "--bootstrap", "0",
            "--metrics", "embodiment_probe_acc"]
    assert main(args + ["--out", str(tmp_path / "ok"), "--fail-under", "embodiment_probe_acc=1"]) == 0
    assert main(args + ["--out", str(tmp_path / "bad"), "--fail-under", "embodiment_probe_acc=0.0"]) == 1
    check = json.loads((tmp_path / "bad" / "metrics.json").read_text())["fail_under"][0]
    assert check["better"] == "lower" and not check["passed"] and check["value"] > 0.0


def test_cli_report_pca(stores, tmp_path, capsys):
    code = main(["report", *map(str, stores), "--layer", "block0", "--layer", "block1", "--headline-layer", "block0",
                 "--projection", "pca", "--bootstrap", "0", "--metrics", "ilisi", "--cache", str(tmp_path / "c"),
                 "--out", str(tmp_path / "r")])
    assert code == 0
    doc = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert doc["layers"] == ["block0", "block1"] and all(l["method"] == "pca" for l in doc["layouts"])
    out = capsys.readouterr().out
    assert "report.html" in out
    # the suggested dashboard opens on the report's headline layer, not the default (last) one
    assert any(line.strip().startswith("probe serve") and "--start-layer block0" in line for line in out.splitlines())
    if known_metric_names():
        assert {n for r in doc["records"] for n in r["metrics"]} == {"ilisi"}
        assert main(["report", str(stores[0]), "--metrics", "ilsi", "--out", str(tmp_path / "x")]) == 2


def test_sampling_is_said_in_the_report(stores, tmp_path):
    result = build_report(stores[:1], tmp_path / "r",
                          ReportConfig(projection=ProjectionConfig(method="pca", max_points=40),
                                       cache_dir=tmp_path / "c", retrieval_queries=0, eval_config=quick_eval()))
    assert any("stratified sample" in n and "40 of 96" in n for n in result.data.notes)
    assert all(np.all(np.diff(l.rows) > 0) for l in result.data.layouts.values())
