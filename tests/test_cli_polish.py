"""What a new user meets first: argument errors in one line naming the command's --help, coverage's defaults
following the store, one note when human and robot share no task, extraction warnings shown once, serve's
warning off loopback, and readable wording (plurals, quoted values, README synopses)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import assert_argument_error, assert_refused, clustered_latents, synthetic_meta
from probe import columns as C
from probe.cli import build_parser, main
from probe.errors import ConfigError
from probe.store.writer import write_store

README = Path(__file__).resolve().parents[1] / "README.md"


# -- 1. argument errors --------------------------------------------------------------------------------------


def test_an_invalid_choice_is_one_line_naming_the_commands_help(capsys):
    err = assert_argument_error(capsys, ["metrics", "STORE", "--by", "episode"])
    assert err.startswith("probe metrics: error: argument --by: invalid choice: 'episode'"), err
    assert "stage" in err and "task" in err and err.endswith("; see probe metrics --help"), err


def test_a_value_given_to_a_flag_names_the_subcommand_not_probe(capsys):
    err = assert_argument_error(capsys, ["coverage", "STORE", "--csv", "cov.csv"])
    assert err == "probe coverage: error: unrecognized arguments: cov.csv; see probe coverage --help", err


def test_every_command_and_world_action_answers_a_bad_flag_in_one_line(capsys):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    commands = [[name] for name in sub.choices]
    world = next(a for a in sub.choices["world"]._actions if a.dest == "action")
    commands += [["world", action] for action in world.choices]
    for command in commands:
        err = assert_argument_error(capsys, [*command, "--no-such-flag"])
        prog = " ".join(["probe", *command])
        assert err.startswith(f"{prog}: error: ") and err.endswith(f"; see {prog} --help"), err
    err = assert_argument_error(capsys, ["world", "train", "w", "--bogus"])
    assert err.startswith("probe world train: error: unrecognized arguments: --bogus"), err
    assert assert_argument_error(capsys, ["nope"]).endswith("; see probe --help")


# -- 2. coverage's embodiments ---------------------------------------------------------------------------------


def _store(path: Path, embodiments=("human", "robot"), tasks=None, warnings=None):
    meta = synthetic_meta(n_episodes=3, frames=12, embodiments=embodiments)
    if tasks:  # {embodiment: task}: every sample of it gets that task
        for emb, task in tasks.items():
            meta.loc[meta[C.EMBODIMENT] == emb, C.TASK] = task
    return write_store(path, meta, {"trunk": clustered_latents(meta, dim=8)}, warnings=warnings)


def test_coverage_covers_the_one_other_embodiment_without_b(tmp_path, capsys):
    from probe.measure.coverage import coverage

    store = _store(tmp_path / "s", ("human", "g1"))
    assert coverage(store.latents("trunk")).b == "g1"
    assert main(["coverage", str(store.path), "--layer", "trunk"]) == 0
    out = capsys.readouterr().out
    assert "g1 states" in out and "'robot'" not in out


def test_coverage_with_several_other_embodiments_asks_for_b(tmp_path, capsys):
    from probe.measure.coverage import coverage

    assert coverage(_store(tmp_path / "r", ("human", "robot", "g1")).latents("trunk")).b == "robot"  # as before
    store = _store(tmp_path / "s", ("human", "g1", "gr1"))
    assert_refused(capsys, ["coverage", str(store.path), "--layer", "trunk"], "g1, gr1", "--b NAME")
    assert main(["coverage", str(store.path), "--layer", "trunk", "--b", "gr1"]) == 0
    assert "gr1 states" in capsys.readouterr().out


def test_the_readme_coverage_section_names_a_and_b():
    text = README.read_text(encoding="utf-8")
    section = text[text.index("**Coverage: where human data is missing.**"):]
    section = section[:section.index("\n\n")]
    assert "--a" in section and "--b" in section


# -- 3. and 4. extract's closing lines -------------------------------------------------------------------------


def test_unshared_tasks_give_one_note_with_the_fix():
    from probe.extraction.samples import unshared_task_note

    meta = synthetic_meta(n_episodes=1, frames=4, tasks=("pick",))
    assert unshared_task_note(meta) is None
    meta.loc[meta[C.EMBODIMENT] == "human", C.TASK] = "grab it"
    note = unshared_task_note(meta)
    assert "human and robot share no task name" in note and "undefined" in note and "\n" not in note
    assert "--task human=TEXT --task robot=TEXT" in note
    given = [{"embodiment": "human", "task_relabel": {"to": "grab it", "from": ["pick"]}}]
    assert "(--task robot='grab it' too)" in unshared_task_note(meta, given)
    assert unshared_task_note(meta.assign(**{C.EMBODIMENT: meta[C.EMBODIMENT].replace("human", "hand")})) is None


# -- 5. retrieve's note ----------------------------------------------------------------------------------------


def test_one_clip_is_said_in_the_singular(tmp_path, capsys):
    from probe.retrieval.index import build_index

    meta = synthetic_meta(n_episodes=1, frames=12, tasks=("pick",))
    store = write_store(tmp_path / "s", meta, {"trunk": clustered_latents(meta, dim=8)})
    build_index(store, "trunk", tmp_path / "idx")
    assert main(["retrieve", "--index", str(tmp_path / "idx"), "--sample-id", "robot/pick/0/5", "-k", "3"]) == 0
    out = capsys.readouterr().out
    assert "note: only 1 clip under --per-episode 1" in out and "1 clips" not in out


# -- 6. serve off loopback -------------------------------------------------------------------------------------


@pytest.mark.parametrize("host, warned", [("0.0.0.0", True), ("::", True), ("192.0.2.7", True), ("127.0.0.1", False),
                                           ("localhost", False), ("::1", False)])
def test_serve_off_loopback_gives_the_local_url_and_a_network_warning(host, warned):
    """What ``probe serve`` prints when ready (``dashboard.app.served_urls``): the URL to open here, and off loopback
    one warning that the dashboard and its videos are reachable from the network."""
    import socket

    from dashboard.app import served_urls

    url, warning = served_urls(host, 8123)
    assert url == {"0.0.0.0": "http://127.0.0.1:8123/", "::": "http://127.0.0.1:8123/",
                   "::1": "http://[::1]:8123/"}.get(host, f"http://{host}:8123/")
    assert (warning is not None) is warned
    if warned:
        assert "reachable from the network" in warning and "videos" in warning and "--host 127.0.0.1" in warning
        network = f"http://{socket.gethostname()}:8123/" if host in ("0.0.0.0", "::") else url
        assert network in warning


# -- 7. and 8. README synopses, quoted values ------------------------------------------------------------------


def test_readme_synopses_name_max_episodes_and_human():
    text = README.read_text(encoding="utf-8")
    extract = re.search(r"^probe extract --checkpoint CKPT \[CKPT2.*?```", text, re.S | re.M).group(0)
    metrics = re.search(r"^probe metrics STORE \[STORE \.\.\.\].*?```", text, re.S | re.M).group(0)
    assert "[--max-episodes N]" in extract and "[--human NAME]" in metrics


def test_a_resume_refusal_quotes_string_values():
    from probe.validate import check_same_options

    with pytest.raises(ConfigError, match=r"used sampling\.tasks\.human 'pick up the can', this run 'grab it'; "
                                          r"fix it"):
        check_same_options({"sampling": {"tasks": {"human": "pick up the can"}}},
                           {"sampling": {"tasks": {"human": "grab it"}}}, what="the complete store 's'", fix="fix it")


def test_metric_values_too_small_for_three_decimals_keep_two_significant_digits():
    from probe.cli.metrics import _fmt

    assert [_fmt(v) for v in (None, 0.0, -0.0, 0.00093, -0.0001, 0.0093, 0.1234, 1.5)] == [
        "—", "0.000", "0.000", "0.00093", "-0.0001", "0.0093", "0.123", "1.500"]


def test_a_folder_of_several_keypoint_files_says_how_to_choose_one_from_the_cli():
    from conftest import SHARED_DATA
    from probe.readers import open_dataset

    hand = SHARED_DATA / "human_hand_dexretargeting"
    if not hand.is_dir():
        pytest.skip(f"real dataset not found: {hand} (see shared/data/README.md)")
    (warning,) = open_dataset(hand).warnings
    assert "holds 2 .npy files; using 'human_joint_right.npy' (others: mp_world_landmarks.npy)" in warning
    assert f"give the file itself: --data EMBODIMENT={hand / 'mp_world_landmarks.npy'}" in warning
    chosen = open_dataset(hand / "mp_world_landmarks.npy")  # the CLI form the warning names
    assert chosen.warnings == [] and chosen.episodes()[0].length == open_dataset(hand).episodes()[0].length
