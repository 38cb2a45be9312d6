"""benchmarks/world_variants.py, the script that reruns the scratch experiments of docs/world-diversity.md, on a
tiny world: a variant's sweep and separation table land in OUT, and a non-empty OUT is refused untouched."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import files_under
from probe.world.generate import generate_world

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "world_variants.py"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return generate_world(tmp_path_factory.mktemp("variants") / "world", size="tiny")


def variants(world: Path, variant: str, out: Path, *extra: str) -> subprocess.CompletedProcess:
    # each run patches probe.world.* in its own process: never in this one
    return subprocess.run([sys.executable, str(SCRIPT), "--world", str(world), "--variant", *variant.split(),
                           "--out", str(out),
                           "--size", "tiny", "--levels", "0", "100", "--episodes", "1", *extra],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


@pytest.mark.parametrize("variant", ["standard", "randomised-looks", "randomised-cameras", "pooled-vision"])
def test_a_variant_writes_its_sweep_and_separation(world, tmp_path, variant):
    out = tmp_path / "out"
    done = variants(world, variant, out)
    assert done.returncode == 0, done.stderr[-2000:]
    sweep = json.loads((out / "world" / "sweep" / "sweep.json").read_text())
    assert [r["level"] for r in sweep["levels"]] == [0, 100]
    assert f"{variant} 100%" in done.stdout and "gain" in done.stdout
    rows = json.loads((out / "separation.json").read_text())["rows"]
    assert {r["checkpoint"] for r in rows} == {"robot-only 0%", "cotrained 0%", "robot-only 100%", "cotrained 100%",
                                               "pretrained 100%"}
    assert all(0 <= v <= 1.5 for r in rows for v in r["vs robot"].values())
    for name in ("datasets", "evaluation", "world.json"):  # the source world is linked, not copied or changed
        assert (out / "world" / name).is_symlink() and (out / "world" / name).resolve() == (world / name).resolve()
    assert json.loads((out / "variant.json").read_text())["variant"] == variant
    model = json.loads((out / "world" / "sweep" / "cotrained" / "level-100" / "config.json").read_text())["model"]
    assert (model.get("vision_pool") == "mean") is (variant == "pooled-vision")


def test_replay_changes_only_the_fine_tuning_after_pre_training(world, tmp_path):
    """``replay`` (combined here with ``randomised-looks``) keeps the mixture in fine-tuning: level 0 (no
    mixture) trains exactly as without it, level 100 does not."""
    from safetensors.numpy import load_file

    runs = {}
    for name, variant in (("alone", "randomised-looks"), ("replay", "replay randomised-looks")):
        done = variants(world, variant, tmp_path / name)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "replay+randomised-looks 100%" in done.stdout or name == "alone"
        runs[name] = tmp_path / name / "world" / "sweep"
    assert json.loads((tmp_path / "replay" / "variant.json").read_text())["variant"] == "replay+randomised-looks"

    def weights(run: Path, level: int) -> dict:
        return load_file(str(run / "cotrained" / f"level-{level:03d}" / "model.safetensors"))

    for level, same in ((0, True), (100, False)):
        a, b = weights(runs["alone"], level), weights(runs["replay"], level)
        assert all(np.array_equal(a[k], b[k]) for k in a) is same, level
    done = variants(world, "replay replay", tmp_path / "twice")
    assert done.returncode == 2 and "give each variant once" in done.stderr


def test_a_non_empty_out_is_refused_and_left_alone(world, tmp_path):
    out = tmp_path / "out"
    (out / "world").mkdir(parents=True)
    (out / "notes.txt").write_text("mine\n")
    (out / "world" / "sweep").mkdir()
    before = files_under(out)
    done = variants(world, "standard", out)
    assert done.returncode == 2
    assert "not empty" in done.stderr and "--overwrite" in done.stderr and "Traceback" not in done.stderr
    # with --overwrite it still refuses an OUT whose world/ it did not write
    done = variants(world, "standard", out, "--overwrite")
    assert done.returncode == 2 and "did not write" in done.stderr, done.stderr
    assert files_under(out) == before and sorted(p.name for p in out.iterdir()) == ["notes.txt", "world"]
    assert not (out / "variant.json").exists() and not any((out / "world" / "sweep").iterdir())
