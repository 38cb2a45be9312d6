"""A new user's second walk through the CLI: a mistyped option gets a "did you mean", an overwrite refusal names
only the flag, metric names stay whole in tables at any usual width, and the emergence rows of a report write a
missing interval as ``"ci": null`` like every other record."""

from __future__ import annotations

import json
import re

import pytest

from conftest import assert_argument_error, clustered_latents, synthetic_meta
from probe.cli import main
from probe.console import console
from probe.errors import OutputExistsError

# -- 1. a mistyped option ------------------------------------------------------------------------------------


@pytest.mark.parametrize("typo", [["--layr", "trunk.block2"], ["--layr=trunk.block2"], ["-layer", "trunk.block2"]])
def test_a_mistyped_option_suggests_the_commands_closest_option(capsys, typo):
    err = assert_argument_error(capsys, ["metrics", "STORE", *typo])
    assert err == (f"probe metrics: error: unrecognized arguments: {' '.join(typo)} (did you mean --layer?); "
                   "see probe metrics --help"), err


def test_the_suggestion_comes_from_the_command_that_read_the_line_and_only_when_one_is_close(capsys):
    err = assert_argument_error(capsys, ["world", "train", "w", "--sed", "3"])
    assert "--sed 3 (did you mean --seed?); see probe world train --help" in err, err
    err = assert_argument_error(capsys, ["metrics", "STORE", "--bootstrp", "5"])
    assert "(did you mean --bootstrap?)" in err, err
    for argv in (["metrics", "STORE", "--no-such-flag"], ["coverage", "STORE", "--csv", "cov.csv"],
                 ["world", "train", "w", "--bogus"]):
        assert "did you mean" not in assert_argument_error(capsys, argv)


# -- 2. overwrite refusals -----------------------------------------------------------------------------------


def test_an_overwrite_refusal_names_the_flag_on_the_cli_and_the_keyword_in_python(tmp_path, capsys):
    from probe.measure.suite import METRICS_JSON
    from probe.validate import check_output_path

    out = tmp_path / "metrics.json"
    out.write_text("")  # empty: ours to replace, but only when asked
    assert main(["metrics", str(tmp_path / "STORE"), "--out", str(out)]) == 2  # refused before the store is read
    err = capsys.readouterr().err.strip()
    assert err == f"error: metrics JSON '{out}' already exists; choose another path or pass --overwrite to replace it"
    with pytest.raises(OutputExistsError, match=r"pass --overwrite \(overwrite=True in Python\) to replace it"):
        check_output_path(out, False, kind=METRICS_JSON)


def test_every_python_hint_beside_a_flag_is_dropped_on_the_cli_and_nothing_else():
    from probe.cli import cli_message

    said = {"'w/sweep' holds a sweep of another world or config; pass --overwrite (overwrite=True in Python) to "
            "replace it": "'w/sweep' holds a sweep of another world or config; pass --overwrite to replace it",
            "a pickle; pass --trust-checkpoint (trust=True in Python) to load it":
            "a pickle; pass --trust-checkpoint to load it",
            "give what 'a' should cover with --b NAME (b= in Python)": "give what 'a' should cover with --b NAME",
            "store 'runs (in Python)' is empty (0 rows)": "store 'runs (in Python)' is empty (0 rows)"}
    for message, shown in said.items():
        assert cli_message(OutputExistsError(message)) == shown


# -- 3. metric names in tables -------------------------------------------------------------------------------


def _records() -> list[dict]:
    """Two stores' records with every registered metric, per stage too (stage names as long as a user's)."""
    from metrics.suite import available

    entry = {"value": 0.5, "ci": [0.25, 0.75], "null": 0.3, "p": 0.01}
    stages = ["reach", "grasp", "lift", "place", "release", "retreat", "approach_object", "handover_to_left"]
    return [{"store": f"/data/probe-demo/stores/cotrained/level-{level:03d}", "checkpoint": f"cotrained {level}%",
             "layer": "trunk.block2", "step": 400, "n": 240, "metrics": {m: dict(entry) for m in available()},
             "per_stage": {s: {m: {"value": 0.5} for m in available()} for s in stages}} for level in (25, 100)]


def _rendered(capsys, monkeypatch, width: int) -> list[str]:
    from probe.cli.metrics import print_records

    monkeypatch.setattr(console, "width", width)
    print_records(_records())
    return capsys.readouterr().out.splitlines()


@pytest.mark.parametrize("width", [100, 120, 160])
def test_every_metric_name_stays_whole_on_one_line(capsys, monkeypatch, width):
    from metrics.suite import available

    names = available()
    assert max(map(len, names)) <= 45  # the longest registered name (39 today) is what the table must keep whole
    whole = {name: re.compile(rf"(?<!\w){re.escape(name)}(?!\w)") for name in names}
    unfolded = _rendered(capsys, monkeypatch, 1000)
    lines = _rendered(capsys, monkeypatch, width)
    for name, pattern in whole.items():  # every row still names it (a table split in parts repeats the column)
        assert sum(bool(pattern.search(line)) for line in lines) >= \
            sum(bool(pattern.search(line)) for line in unfolded) > 0, (name, width)
    cells = {c.strip() for line in lines if line.startswith("│") for c in line.strip("│").split("│")} - {""}
    pieces = {c for c in cells - set(names) if any(n.startswith(c) or n.endswith(c) for n in names)}
    assert not pieces, (width, pieces)  # no "retrieval_precision_at_1_human_to_robo" over a "t"


# -- 4. emergence intervals ----------------------------------------------------------------------------------


def _cis(value, found: list) -> list:
    """Every ``ci`` value anywhere in ``value``."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "ci":
                found.append(item)
            _cis(item, found)
    elif isinstance(value, list):
        for item in value:
            _cis(item, found)
    return found


def test_an_emergence_row_without_an_interval_writes_ci_null(tmp_path):
    from metrics.spec import MetricsConfig
    from probe.projection.layout import ProjectionConfig
    from probe.report.build import build_report
    from probe.report.config import ReportConfig
    from probe.store.writer import write_store

    meta = synthetic_meta(n_episodes=4, frames=12)
    gains = {(0, 0): {"value": 0.1, "ci": [0.0, 0.2]}, (0, 1): None,  # seed 1 measured no gain: no mean
             (100, 0): {"value": 0.3}}  # a gain without an interval
    paths = []
    for (level, seed), gain in gains.items():
        checkpoint = {"recipe": "cotrained", "diversity": level, "seed": seed, "step": 50}
        if gain is not None:
            checkpoint["transfer_gain"] = gain
        X = clustered_latents(meta, shift=4.0 - level / 40, seed=level + seed)
        paths.append(write_store(tmp_path / f"seed{seed}" / f"level-{level:03d}", meta, {"trunk": X},
                                 provenance={"checkpoint": checkpoint}).path)
    config = ReportConfig(projection=ProjectionConfig(method="pca"), retrieval_queries=0,
                          eval_config=MetricsConfig(bootstrap=0, null_repeats=2, k=20, permutations=0,
                                                    metrics=("ilisi", "stage_transfer_acc_robot_to_human")))
    report = build_report(paths, tmp_path / "report", config)
    rows = json.loads((report.out / "metrics.json").read_text())["emergence"]
    by_level = {r["level"]: r for r in rows}
    assert set(by_level) == {0, 100} and by_level[0]["seeds"] == [0, 1]
    cis = _cis(rows, [])
    assert cis and all(ci is None or (len(ci) == 2 and None not in ci) for ci in cis), cis
    assert by_level[100]["mixing"]["ci"] is None and by_level[100]["p_at_1"]["ci"] is None  # no bootstrap
    assert by_level[100]["transfer_gain"] == {"value": 0.3, "ci": None}
    assert by_level[0]["transfer_gain"]["ci"] is None and by_level[0]["transfer_gain"]["value"] is None
    low, high = by_level[0]["mixing"]["ci"]  # across the two seeds
    assert low <= by_level[0]["mixing"]["value"] <= high
    assert f"[{low:.0%}, {high:.0%}]" in by_level[0]["verdict_sentence"]
    assert "Emergence across pre-training diversity" in (report.out / "report.html").read_text()
