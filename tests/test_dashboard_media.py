"""The media route (registered files only, HTTP Range), thumbnails, callbacks through Flask, `probe serve`."""

from __future__ import annotations

import json
import socket

import pytest

from dashboard.app import create_app
from dashboard.state.loading import prepare
from probe import columns as C
from test_dashboard_data import light_metrics, make_stores


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("dash-media")
    stores = make_stores(root, n_episodes=2, frames=10)
    prepared = prepare([s.path for s in stores], layers="trunk.block0", k=3, method="pca", metrics_config=light_metrics())
    app = create_app(prepared)
    return prepared, app, app.server.test_client(), root


def test_media_serves_registered_files_with_ranges(setup):
    prepared, _, client, _ = setup
    token, path = next(iter(prepared.media.items()))
    data = path.read_bytes()
    full = client.get(f"/media/{token}")
    assert full.status_code == 200 and full.data == data
    assert full.headers["Accept-Ranges"] == "bytes" and full.mimetype == "video/mp4"
    part = client.get(f"/media/{token}", headers={"Range": "bytes=10-99"})
    assert part.status_code == 206
    assert part.headers["Content-Range"] == f"bytes 10-99/{len(data)}"
    assert part.data == data[10:100]
    tail = client.get(f"/media/{token}", headers={"Range": "bytes=-16"})
    assert tail.status_code == 206 and tail.data == data[-16:]
    open_ended = client.get(f"/media/{token}", headers={"Range": f"bytes={len(data) - 5}-"})
    assert open_ended.status_code == 206 and open_ended.data == data[-5:]
    beyond = client.get(f"/media/{token}", headers={"Range": f"bytes={len(data) + 10}-"})
    assert beyond.status_code == 416


@pytest.mark.parametrize("url", [
    "/media/../manifest.json",
    "/media/..%2f..%2fetc%2fpasswd",
    "/media/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/media/%252e%252e%252fetc%252fpasswd",
    "/media//etc/passwd",
    "/media/%2Fetc%2Fpasswd",
    "/media/etc/passwd",
    "/media/0123456789abcdef0123",
    "/media/",
    "/media/..",
    "/media/ABCDEF0123456789ABCD",
    "/thumb/0/999999.jpg",
    "/thumb/7/0.jpg",
    "/thumb/-1/0.jpg",
    "/thumb/0/..%2f0.jpg",
    "/videos/human-data-0.mp4",
])
def test_traversal_and_unknown_paths_are_404(setup, url):
    _, _, client, root = setup
    response = client.get(url)
    assert response.status_code == 404, url
    assert b"ftyp" not in response.data and b"root:" not in response.data


def test_absolute_registered_path_is_not_a_token(setup):
    prepared, _, client, _ = setup
    path = next(iter(prepared.media.values()))
    assert client.get(f"/media/{path}").status_code == 404
    assert client.get(f"/media/{path.name}").status_code == 404


def test_thumbnails_are_jpeg_frames_of_registered_videos(setup):
    prepared, _, client, _ = setup
    ck = prepared.checkpoints[0]
    row = int(ck.meta.index[ck.meta[C.FRAME] == 4][0])
    response = client.get(f"/thumb/0/{row}.jpg")
    assert response.status_code == 200 and response.mimetype == "image/jpeg"
    assert response.data[:2] == b"\xff\xd8"
    other = client.get(f"/thumb/0/{row + 1}.jpg")
    assert other.data != response.data  # frames differ (the test video changes every frame)


def test_store_without_video_has_no_thumbnails(tmp_path):
    stores = make_stores(tmp_path, n_episodes=1, video=False, checkpoints=1)
    prepared = prepare([stores[0].path], method="pca", metrics_config=light_metrics())
    client = create_app(prepared).server.test_client()
    assert prepared.media == {}
    assert client.get("/thumb/0/0.jpg").status_code == 404
    assert client.get("/").status_code == 200


def _callback(client, output, inputs, state=(), triggered=None):
    outs = [o.split(".") for o in output.split("+")]
    if len(outs) == 1:
        output, outputs = output, {"id": outs[0][0], "property": outs[0][1]}
    else:
        output = ".." + "...".join(f"{c}.{p}" for c, p in outs) + ".."
        outputs = [{"id": c, "property": p} for c, p in outs]
    body = {"output": output, "outputs": outputs, "inputs": inputs, "state": list(state),
            "changedPropIds": triggered or [f"{i['id']}.{i['property']}" for i in inputs][:1]}
    return client.post("/_dash-update-component", data=json.dumps(body), content_type="application/json")


def test_unknown_point_in_a_request_is_not_a_500(setup):
    prepared, app, client, _ = setup
    state = prepared.default_state().with_(point="robot/no/such/point").to_dict()
    response = _callback(client, "neighbours.children+neighbours-key.data",
                         [{"id": "view-state", "property": "data", "value": state}],
                         [{"id": "neighbours-key", "property": "data", "value": None}])
    assert response.status_code == 200
    assert "click a robot point" in response.get_data(as_text=True)  # unknown point dropped
    hover = _callback(client, "hover-card.children",
                      [{"id": "map", "property": "hoverData",
                        "value": {"points": [{"curveNumber": 0, "pointIndex": 10**7}]}}],
                      [{"id": "view-state", "property": "data", "value": state}])
    assert hover.status_code == 200
    assert "hover a point" in hover.get_data(as_text=True)
    crafted = _callback(client, "metrics.children+metrics-key.data",
                        [{"id": "view-state", "property": "data", "value": {"store": "../../etc", "layer": 3}}],
                        [{"id": "metrics-key", "property": "data", "value": None}])
    assert crafted.status_code == 200 and "metrics" in crafted.get_data(as_text=True)


def test_serve_cli_refuses_a_bad_store_without_starting(tmp_path, capsys):
    from probe.cli import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    code = main(["serve", str(tmp_path / "nope"), "--port", port])
    assert code == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "broken").mkdir()
    assert main(["serve", str(tmp_path / "broken"), "--port", port]) == 2
    assert "manifest.json is missing" in capsys.readouterr().err


def test_serve_cli_refuses_a_busy_port(tmp_path, capsys):
    from probe.cli import main

    stores = make_stores(tmp_path, n_episodes=1, video=False, checkpoints=1)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["serve", str(stores[0].path), "--port", str(port)]) == 2
    assert "cannot listen on 127.0.0.1" in capsys.readouterr().err
    assert main(["serve", str(stores[0].path), "--port", "0"]) == 2
    assert "--port must be in 1..65535" in capsys.readouterr().err


def test_serve_cli_defaults(tmp_path):
    from probe.cli import build_parser

    args = build_parser().parse_args(["serve", "a", "b"])
    assert args.host == "127.0.0.1" and args.port == 8050 and args.stores == ["a", "b"]
    assert not getattr(args, "debug", False)
    assert args.start_layer is None  # the page opens on the last layer shown (probe.store.series.default_layer)
    assert build_parser().parse_args(["serve", "a", "--start-layer", "trunk.block2"]).start_layer == "trunk.block2"
