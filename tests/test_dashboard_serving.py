"""Issue #16: the dashboard serves only video files inside the stores' dataset roots, to this machine only.

Real stores with real H.264 videos, whose ``video`` column also names files the
toolkit must never read: a file outside the datasets, a relative escape, paths
through symlinks, non-video files inside a root, and /etc/passwd. Every route is
tried through the Flask test client (and once through the real waitress server),
and requests must name this machine; the real ``probe serve`` names its video roots.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import clustered_latents
from dashboard.app import create_app, make_server
from dashboard_video_world import (LAYER, SECRET, dataset_roots, free_port, prepare_dashboard, video_world,
                                   write_video_store)
from probe import columns as C
from probe.store.writer import write_store
from test_dashboard_data import write_video


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
    data, _, meta = video_world(tmp)
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
    store = write_video_store(store_path, meta, dataset_roots(data))
    (store_path / "lnk").symlink_to(outside, target_is_directory=True)
    handler = _Records()
    logger = logging.getLogger("dashboard.state.loading")
    logger.addHandler(handler)
    try:
        prepared = prepare_dashboard([store.path])
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
    again = prepare_dashboard([prepared.checkpoints[0].store.path])
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


@pytest.mark.parametrize("body, status", [({}, 500), ({"output": "map.figure", "inputs": "not a list"}, 500),
                                          ("not json", 400)])
def test_a_malformed_callback_post_is_one_log_line_and_an_error_answer(crafted, body, status, caplog):
    """A request that makes the app raise is one log line and a 500; one Flask refuses itself (not JSON) is its
    400, logged not at all."""
    client = crafted[1]
    with caplog.at_level(logging.ERROR):
        response = (client.post("/_dash-update-component", json=body) if isinstance(body, dict)
                    else client.post("/_dash-update-component", data=body, content_type="application/json"))
    assert response.status_code == status and b"Traceback" not in response.data
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert all(r.exc_info is None for r in caplog.records), "a traceback reached the log"
    if status == 500:
        (line,) = errors
        assert line.startswith("POST /_dash-update-component failed: ") and "--debug" in line
    else:
        assert errors == []


def test_dashboard_opens_on_the_first_store_given(tmp_path):
    data, _, meta = video_world(tmp_path)
    first = write_video_store(tmp_path / "first", meta, dataset_roots(data))
    second = write_store(tmp_path / "second", meta, {LAYER: clustered_latents(meta, dim=8, shift=3.0, seed=1)},
                         provenance={"checkpoint": {"step": 200}, "datasets": dataset_roots(data)})
    prepared = prepare_dashboard([first.path, second.path])
    assert prepared.default_state().store == prepared.names[0] == "step 100"


def test_waitress_serves_the_app_and_checks_hosts(crafted):
    from waitress.wasyncore import close_all

    prepared = crafted[0]
    port = free_port()
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


def test_probe_serve_names_its_video_roots_answers_and_stops_on_ctrl_c(tmp_path):
    """The real command: one line naming the folders videos are served from, an answer, a clean Ctrl+C.

    Run with ``--debug``, which means tracebacks in the terminal only: the server is still waitress, never
    Werkzeug's debugger (whose ``/console`` runs Python code)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    data, _, meta = video_world(tmp_path)
    first = write_video_store(tmp_path / "first", meta, dataset_roots(data))
    second = write_video_store(tmp_path / "second", meta, dataset_roots(data))
    port = free_port()
    log_file = tmp_path / "serve.log"  # a file, not a pipe: a full pipe would block the server's writes
    with log_file.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "probe", "--debug", "serve", "--projection", "pca",
                                 "--port", str(port),
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
        page = conn.getresponse()
        page.read()
        assert page.status == 200 and page.getheader("Server") == "embodiment-probe"  # waitress, not Werkzeug
        conn.request("GET", "/console", headers={"Host": f"127.0.0.1:{port}"})
        console = conn.getresponse()
        assert console.status == 404 and b"Werkzeug" not in console.read()
        assert not any("Debug mode" in line for line in log_file.read_text().splitlines())
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            rc = proc.wait(timeout=60)
        finally:
            proc.kill()
    assert rc == 0, log_file.read_text()


def test_serve_api_refuses_werkzeugs_debugger_off_loopback(tmp_path):
    from dashboard.app import is_loopback, serve
    from probe.errors import ConfigError

    with pytest.raises(ConfigError, match="Werkzeug's debugger"):  # refused before any work (no store is read)
        serve([tmp_path / "missing"], host="0.0.0.0", debug=True)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2") and not is_loopback("example.org")
