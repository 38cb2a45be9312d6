"""Issue #16: the dashboard serves only video files inside the stores' dataset roots, to this machine only.

Real stores with real H.264 videos, whose ``video`` column also names files the
toolkit must never read: a file outside the datasets, a relative escape, paths
through symlinks, non-video files inside a root, and /etc/passwd. Every route is
tried through the Flask test client (and once through the real waitress server).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import shutil
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import clustered_latents, synthetic_meta
from dashboard.app import create_app, make_server
from dashboard.state.loading import prepare
from probe import columns as C
from probe.cli import main
from probe.errors import ConfigError, DataError
from probe.store.media import VideoPaths
from probe.store.store import open_store
from probe.store.writer import write_store
from test_dashboard_data import FPS, light_metrics, write_video

SECRET = b"TOP-SECRET-do-not-serve"
LAYER = "trunk.block0"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _world(tmp: Path, *, old_style: bool = False) -> tuple[Path, dict, object]:
    """Two datasets (``human-data``, ``robot-data``) under ``tmp/data`` with one video per episode,
    and the sample table naming them: relative to the roots, or (``old_style``) absolute."""
    meta = synthetic_meta(n_episodes=1, frames=10)
    data = tmp / "data"
    values = {}
    for i, (ds, ep) in enumerate(sorted(set(zip(meta[C.DATASET], meta[C.EPISODE])))):
        (data / ds / "videos").mkdir(parents=True, exist_ok=True)
        video = write_video(data / ds / "videos" / f"ep{ep}.mp4", 10, seed=i)
        values[(ds, ep)] = str(video) if old_style else f"videos/ep{ep}.mp4"
    meta[C.VIDEO] = [values[(d, e)] for d, e in zip(meta[C.DATASET], meta[C.EPISODE])]
    meta[C.VIDEO_TIMESTAMP] = meta[C.FRAME] / FPS
    return data, values, meta


def _write(path: Path, meta, datasets: list[dict]):
    layers = {LAYER: clustered_latents(meta, dim=8, seed=1)}
    return write_store(path, meta, layers, provenance={"checkpoint": {"step": 100}, "datasets": datasets})


def _roots(data: Path) -> list[dict]:
    return [{"name": ds, "root": str((data / ds).resolve())} for ds in ("human-data", "robot-data")]


def _prepare(paths, **kw):
    return prepare(list(paths), layers=LAYER, k=3, method="pca", metrics_config=light_metrics(), **kw)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def crafted(tmp_path_factory):
    """A store whose human 'pick' episode names files outside the roots, and the prepared app."""
    tmp = tmp_path_factory.mktemp("security")
    data, _, meta = _world(tmp)
    outside = tmp / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    (tmp / "secret.txt").write_bytes(SECRET)
    secret_video = write_video(outside / "secret.mp4", 10, seed=99)
    root = data / "human-data"
    (root / "notes.txt").write_bytes(SECRET)
    (root / "escape").symlink_to(outside, target_is_directory=True)
    (root / "link.mp4").symlink_to(secret_video)
    (root / "fake.mp4").symlink_to(root / "notes.txt")
    store_path = tmp / "store"
    targets = {
        0: str(outside / "secret.txt"),          # (a) a file outside the datasets
        1: str(secret_video),                    # (a) a video outside the datasets
        2: "../../secret.txt",                   # (b) a relative escape
        3: str(store_path / "lnk" / "secret.mp4"),  # (c) through a symlink inside the store
        4: "escape/secret.mp4",                  # (c) through a symlinked folder inside the root
        5: "link.mp4",                           # (c) a symlinked file inside the root
        6: "notes.txt",                          # (d) a non-video file inside the root
        7: "fake.mp4",                           # (d) a video name for a non-video file
        8: "/etc/passwd",
    }
    pick = np.flatnonzero(((meta[C.DATASET] == "human-data") & (meta[C.TASK] == "pick")).to_numpy())
    video = meta[C.VIDEO].to_numpy(dtype=object)
    for offset, value in targets.items():
        video[pick[offset]] = value
    meta[C.VIDEO] = video
    store = _write(store_path, meta, _roots(data))
    (store_path / "lnk").symlink_to(outside, target_is_directory=True)
    handler = _Records()
    logger = logging.getLogger("dashboard.state.loading")
    logger.addHandler(handler)
    try:
        prepared = _prepare([store.path])
    finally:
        logger.removeHandler(handler)
    app = create_app(prepared, port=8050)
    rows = [int(pick[o]) for o in targets]
    escaped = [outside / "secret.txt", secret_video, tmp / "secret.txt", root / "notes.txt", Path("/etc/passwd")]
    return prepared, app.server.test_client(), rows, escaped, handler.lines, data


def test_no_route_serves_a_file_outside_the_roots(crafted):
    prepared, client, rows, escaped, _, data = crafted
    legit = {p.resolve() for p in data.glob("*/videos/*.mp4")}
    assert set(prepared.media.values()) == legit  # only the real videos inside the roots are registered
    secret_video = escaped[1].read_bytes()
    for token in prepared.media:
        served = client.get(f"/media/{token}", headers={"Host": "127.0.0.1:8050"})
        assert served.status_code == 200
        assert SECRET not in served.data and served.data != secret_video
    ck = prepared.checkpoints[0]
    for row in rows:
        assert ck.video_code[row] == -1
        assert client.get(f"/thumb/0/{row}.jpg").status_code == 404
    for path in escaped + sorted(legit):  # the old tokens: a hash of the path
        old = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:20]
        assert client.get(f"/media/{old}").status_code == 404


def test_left_out_rows_get_one_warning_naming_them(crafted):
    _, _, rows, _, lines, _ = crafted
    left_out = [line for line in lines if "left out" in line]
    assert len(left_out) == 1
    assert f"{len(rows)} row(s) (rows {', '.join(map(str, rows[:5]))}, ...)" in left_out[0]
    assert "--data-root NAME=PATH" in left_out[0]


def test_legitimate_video_serves_with_ranges_and_thumbnails(crafted):
    prepared, client, rows, _, _, _ = crafted
    token, path = next(iter(prepared.media.items()))
    data = path.read_bytes()
    full = client.get(f"/media/{token}")
    assert full.status_code == 200 and full.data == data and full.headers["Accept-Ranges"] == "bytes"
    part = client.get(f"/media/{token}", headers={"Range": "bytes=4-19"})
    assert part.status_code == 206 and part.data == data[4:20]
    ck = prepared.checkpoints[0]
    good = int(np.flatnonzero(ck.video_code >= 0)[0])
    thumb = client.get(f"/thumb/0/{good}.jpg")
    assert thumb.status_code == 200 and thumb.data[:2] == b"\xff\xd8"


def test_tokens_are_random_per_server(crafted, tmp_path):
    prepared = crafted[0]
    again = _prepare([prepared.checkpoints[0].store.path])
    assert set(again.media.values()) == set(prepared.media.values())
    assert not set(again.media) & set(prepared.media)


@pytest.mark.parametrize("host, port, allow, header, code", [
    ("127.0.0.1", 8050, (), "127.0.0.1:8050", 200),
    ("127.0.0.1", 8050, (), "localhost:8050", 200),
    ("127.0.0.1", 8050, (), "[::1]:8050", 200),
    ("127.0.0.1", 8050, (), "localhost", 200),
    ("127.0.0.1", 8050, (), "evil.example:8050", 400),
    ("127.0.0.1", 8050, (), "evil.example", 400),
    ("127.0.0.1", 8050, (), "127.0.0.1.evil.example:8050", 400),
    ("127.0.0.1", 8050, (), "localhost:9999", 400),
    ("127.0.0.1", 8050, (), "192.168.1.20:8050", 400),
    ("0.0.0.0", 8050, (), "192.168.1.20:8050", 200),
    ("0.0.0.0", 8050, (), "[fe80::1]:8050", 200),
    ("0.0.0.0", 8050, (), "evil.example:8050", 400),
    ("0.0.0.0", 8050, ("dash.lan",), "dash.lan", 200),
    ("0.0.0.0", 8050, ("dash.lan",), "dash.lan:443", 200),
    ("0.0.0.0", 8050, ("dash.lan",), "other.lan:8050", 400),
])
def test_only_requests_naming_this_machine_are_answered(crafted, host, port, allow, header, code):
    prepared = crafted[0]
    client = create_app(prepared, host=host, port=port, allow_hosts=allow).server.test_client()
    token = next(iter(prepared.media))
    for url in ("/", f"/media/{token}", "/_dash-layout"):
        response = client.get(url, headers={"Host": header})
        assert response.status_code == code, (url, header)
    if code == 400:
        assert b"--allow-host" in response.data


def test_machine_host_name_is_accepted_when_bound_to_every_interface(crafted):
    client = create_app(crafted[0], host="0.0.0.0", port=8050).server.test_client()
    assert client.get("/", headers={"Host": f"{socket.gethostname()}:8050"}).status_code == 200


@pytest.mark.parametrize("url", ["/_dash-component-suites/dash/../../etc/passwd",
                                 "/_dash-component-suites/dash/%2e%2e/%2e%2e/setup.py",
                                 "/_dash-component-suites/nonexistent/x.js",
                                 "/_dash-component-suites/dash/nope.js",
                                 "/_dash-component-suites/plotly/../../../etc/passwd"])
def test_bad_component_suite_paths_are_404_without_a_traceback(crafted, url, caplog):
    client = crafted[1]
    with caplog.at_level(logging.ERROR):
        response = client.get(url)
    assert response.status_code == 404 and b"root:" not in response.data
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_dashboard_opens_on_the_first_store_given(tmp_path):
    data, _, meta = _world(tmp_path)
    first = _write(tmp_path / "first", meta, _roots(data))
    second = write_store(tmp_path / "second", meta, {LAYER: clustered_latents(meta, dim=8, shift=3.0, seed=1)},
                         provenance={"checkpoint": {"step": 200}, "datasets": _roots(data)})
    prepared = _prepare([first.path, second.path])
    assert prepared.default_state().store == prepared.names[0] == "step 100"


# -- moved datasets, old stores ----------------------------------------------------------------------


@pytest.fixture
def moved(tmp_path):
    """A clean store whose datasets then move from ``data/`` to ``elsewhere/``."""
    data, _, meta = _world(tmp_path)
    store = _write(tmp_path / "store", meta, _roots(data))
    shutil.move(str(data), str(tmp_path / "elsewhere"))
    roots = {ds: tmp_path / "elsewhere" / ds for ds in ("human-data", "robot-data")}
    return store, roots, tmp_path


def test_data_root_re_points_a_moved_dataset(moved, caplog):
    store, roots, tmp = moved
    with caplog.at_level(logging.WARNING):
        lost = _prepare([store.path])
    assert lost.media == {}
    assert any("does not exist" in r.getMessage() and "--data-root human-data=PATH" in r.getMessage()
               for r in caplog.records)
    found = _prepare([store.path], data_roots=roots)
    assert set(found.media.values()) == {p.resolve() for p in (tmp / "elsewhere").glob("*/videos/*.mp4")}
    client = create_app(found).server.test_client()
    assert client.get(f"/media/{next(iter(found.media))}").status_code == 200
    with pytest.raises(ConfigError, match="known datasets: human-data, robot-data"):
        _prepare([store.path], data_roots={"nope": tmp})


def test_serve_cli_names_the_known_datasets_for_an_unknown_data_root(moved, capsys):
    store, _, tmp = moved
    assert main(["serve", str(store.path), "--port", str(_free_port()), "--data-root", f"nope={tmp}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'nope'" in err and "known datasets: human-data, robot-data" in err
    assert main(["serve", str(store.path), "--port", str(_free_port()), "--data-root", "human-data"]) == 2
    assert "NAME=PATH" in capsys.readouterr().err


def test_retrieve_export_clips_with_a_moved_dataset(moved, capsys):
    from probe.retrieval.index import build_index

    store, roots, tmp = moved
    build_index(store, LAYER, tmp / "idx")
    query = ["retrieve", "--index", str(tmp / "idx"), "--sample-id", "robot/pick/0/5", "-k", "2"]
    assert main(query + ["--export-clips", str(tmp / "lost")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not exist" in err and "--data-root" in err
    assert main(query + ["--export-clips", str(tmp / "clips"), "--data-root", f"human-data={roots['human-data']}",
                         "--data-root", f"robot-data={roots['robot-data']}"]) == 0
    assert len(list((tmp / "clips").glob("*.mp4"))) == 2
    captions = json.loads((tmp / "clips" / "clips.json").read_text())
    assert all(c["file"] for c in captions["queries"][0]["clips"])


def test_report_examples_read_frames_from_a_moved_dataset(moved):
    from probe.report.examples import retrieval_examples

    store, roots, _ = moved
    lost, _ = retrieval_examples(store, LAYER, n_queries=1, k=2)
    assert lost and lost[0].query.image is None
    found, _ = retrieval_examples(store, LAYER, n_queries=1, k=2, data_roots=roots)
    assert found[0].query.image.startswith("data:image/png") and all(m.image for m in found[0].matches)


def test_old_style_store_still_works_and_is_still_confined(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data, values, meta = _world(tmp_path, old_style=True)
    human = np.flatnonzero((meta[C.DATASET] == "human-data").to_numpy())
    video = meta[C.VIDEO].to_numpy(dtype=object)
    (tmp_path / "secret.mp4").write_bytes(SECRET)
    video[human[0]] = str(tmp_path / "secret.mp4")
    meta[C.VIDEO] = video
    # as 'probe extract' recorded them before: the dataset paths as given on the command line
    old = [{"name": ds, "path": f"data/{ds}"} for ds in ("human-data", "robot-data")]
    store = _write(tmp_path / "store", meta, old)
    prepared = _prepare([store.path])
    assert set(prepared.media.values()) == {Path(v).resolve() for v in values.values()}
    assert prepared.checkpoints[0].video_code[human[0]] == -1
    # moved: absolute per-row paths move along with --data-root
    shutil.move(str(data), str(tmp_path / "moved"))
    videos = VideoPaths(open_store(store.path), {"robot-data": tmp_path / "moved" / "robot-data"})
    robot = meta[meta[C.DATASET] == "robot-data"].iloc[0]
    assert videos.path(robot[C.VIDEO], "robot-data") == (tmp_path / "moved" / "robot-data" / "videos"
                                                         / Path(robot[C.VIDEO]).name).resolve()
    with pytest.raises(DataError, match="does not exist|--data-root"):
        VideoPaths(open_store(store.path)).path(robot[C.VIDEO], "robot-data")


def test_videos_reached_through_recorded_media_roots(tmp_path):
    """A Hugging Face cache keeps files as symlinks into blobs/: the store records that folder."""
    blobs = tmp_path / "hub" / "blobs"
    blobs.mkdir(parents=True)
    write_video(blobs / "tmp.mp4", 10).rename(blobs / "3f2a9c")  # blobs carry no suffix
    data, _, meta = _world(tmp_path)
    link = data / "human-data" / "videos" / "cached.mp4"
    link.symlink_to(blobs / "3f2a9c")
    human = (meta[C.DATASET] == "human-data").to_numpy()
    meta.loc[human, C.VIDEO] = "videos/cached.mp4"
    plain = _write(tmp_path / "plain", meta, _roots(data))
    assert VideoPaths(plain).find("videos/cached.mp4", "human-data").refused
    roots = _roots(data)
    roots[0]["media_roots"] = [str(blobs.resolve())]
    recorded = _write(tmp_path / "recorded", meta, roots)
    assert VideoPaths(recorded).path("videos/cached.mp4", "human-data") == (blobs / "3f2a9c").resolve()


def test_waitress_serves_the_app_and_checks_hosts(crafted):
    from waitress.wasyncore import close_all

    prepared = crafted[0]
    port = _free_port()
    app = create_app(prepared, port=port)
    sockets: dict = {}
    server = make_server(app, "127.0.0.1", port, threads=2, map=sockets)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        token, path = next(iter(prepared.media.items()))

        def get(url: str, **headers: str) -> http.client.HTTPResponse:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", url, headers=headers)
            return conn.getresponse()

        assert get("/").status == 200
        ranged = get(f"/media/{token}", Range="bytes=0-9")
        assert ranged.status == 206 and ranged.read() == path.read_bytes()[:10]
        assert get(f"/media/{token}", Host=f"evil.example:{port}").status == 400
        assert get("/_dash-component-suites/dash/nope.js").status == 404
    finally:  # closed from the server's own loop (closing its sockets from here races its select)
        server.trigger.pull_trigger(lambda: close_all(sockets))
        thread.join(10)
        server.task_dispatcher.shutdown()
    assert not thread.is_alive()


# -- the store's own files -----------------------------------------------------------------------------


def test_info_refuses_a_layer_file_outside_the_store(tmp_path, capsys):
    meta = synthetic_meta(n_episodes=1, frames=6)
    store = write_store(tmp_path / "deep" / "er" / "store", meta, {LAYER: clustered_latents(meta, dim=4)})
    np.savez(tmp_path / "x.npz", a=np.zeros(3))
    np.save(tmp_path / "deep" / "x.npy", np.zeros((len(meta), 4), np.float32))
    manifest_file = store.path / "manifest.json"
    for file in ("../../../x.npz", "../../x.npy", "/etc/passwd"):
        manifest = json.loads(manifest_file.read_text())
        manifest["layers"][LAYER]["file"] = file
        manifest_file.write_text(json.dumps(manifest))
        assert main(["info", str(store.path)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1
        assert f"layer '{LAYER}'" in err and repr(file) in err and "layers/" in err


def test_report_cli_names_the_known_datasets_for_an_unknown_data_root(moved, capsys):
    store, _, tmp = moved
    assert main(["report", str(store.path), "--out", str(tmp / "r"), "--data-root", f"nope={tmp}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "known datasets: human-data, robot-data" in err
    assert not (tmp / "r").exists()


def test_import_records_the_root_of_its_videos(tmp_path):
    from probe.store.importer import import_latents

    data, values, meta = _world(tmp_path, old_style=True)
    meta["trunk"] = list(clustered_latents(meta, dim=4))
    meta.to_parquet(tmp_path / "latents.parquet")
    store = import_latents(tmp_path / "latents.parquet", tmp_path / "store")
    roots = {d["name"]: d["root"] for d in store.provenance["datasets"]}
    assert roots == {ds: str((data / ds / "videos").resolve()) for ds in ("human-data", "robot-data")}
    assert set(store.meta[C.VIDEO]) == {"ep0.mp4", "ep1.mp4", "ep2.mp4", "ep3.mp4"}
    videos = VideoPaths(store)
    assert {videos.path(v, d) for v, d in zip(store.meta[C.VIDEO], store.meta[C.DATASET])} == \
        {Path(v).resolve() for v in values.values()}


def test_probe_serve_names_its_video_roots_answers_and_stops_on_ctrl_c(tmp_path):
    """The real command: one line naming the folders videos are served from, an answer, a clean Ctrl+C."""
    import os
    import signal
    import subprocess
    import sys
    import time

    data, _, meta = _world(tmp_path)
    first = _write(tmp_path / "first", meta, _roots(data))
    second = _write(tmp_path / "second", meta, _roots(data))
    port = _free_port()
    log_file = tmp_path / "serve.log"  # a file, not a pipe: a full pipe would block the server's writes
    with log_file.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "probe", "serve", "--projection", "pca", "--port", str(port),
                                 "--cache", str(tmp_path / "cache"), str(first.path), str(second.path)],
                                stdout=out, stderr=subprocess.STDOUT, text=True, env=dict(os.environ, COLUMNS="300"),
                                # a run started in the background (nohup, CI) inherits an ignored SIGINT:
                                # give the server the default one, as a terminal would
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 180
        while "dashboard ready" not in log_file.read_text() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        lines = log_file.read_text().splitlines()
        assert any("dashboard ready" in line for line in lines), "\n".join(lines)
        roots = next(line for line in lines if line.startswith("videos served only from inside:"))
        assert str((data / "human-data").resolve()) in roots and str((data / "robot-data").resolve()) in roots
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/", headers={"Host": f"127.0.0.1:{port}"})
        assert conn.getresponse().status == 200
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            rc = proc.wait(timeout=60)
        finally:
            proc.kill()
    assert rc == 0, log_file.read_text()
