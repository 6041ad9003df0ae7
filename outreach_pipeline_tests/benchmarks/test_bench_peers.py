"""The peer benchmark's own logic (benchmarks/bench_peers.py), without the benchmark run itself.

The origin rewrite the tap's virtualenv gets is checked over real HTTP: a child interpreter loads the written
`sitecustomize.py` and asks for an ``https://api.outreach.io`` URL, which must arrive at a local server.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import ClassVar

import pytest

BENCH_PEERS = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_peers.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_peers", BENCH_PEERS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve the module's annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def test_arguments_default_to_a_modest_run_of_every_tool(bench: ModuleType) -> None:
    args = bench.parse_args([])
    assert (args.prospects, args.page_size, args.repeat, args.tap_version) == (20_000, 1000, 1, "1.2.2")
    assert args.tools == ["ours-sparse", "ours-all", "tap"] and args.command is None
    child = bench.parse_args(["extract-ours", "--outreach-url", "http://127.0.0.1:1", "--all-attributes"])
    assert (child.command, child.outreach_url, child.all_attributes) == ("extract-ours", "http://127.0.0.1:1", True)
    for wrong in (["--page-size", "1001"], ["--repeat", "0"], ["--tools", "airbyte"]):
        with pytest.raises(SystemExit):
            bench.parse_args(wrong)


def test_only_the_three_streams_and_their_supported_fields_are_selected(bench: ModuleType) -> None:
    def entry(name: str) -> dict:
        return {"tap_stream_id": name, "metadata": [
            {"breadcrumb": [], "metadata": {"inclusion": "available"}},
            {"breadcrumb": ["properties", "name"], "metadata": {"inclusion": "available"}},
            {"breadcrumb": ["properties", "odd"], "metadata": {"inclusion": "unsupported"}},
        ]}

    catalog = bench.select_streams({"streams": [entry("prospects"), entry("tasks")]}, bench.STREAMS)
    prospects, tasks = ({tuple(m["breadcrumb"]): m["metadata"].get("selected") for m in e["metadata"]}
                        for e in catalog["streams"])
    assert prospects == {(): True, ("properties", "name"): True, ("properties", "odd"): None}
    assert tasks == {(): False, ("properties", "name"): False, ("properties", "odd"): None}


def test_tap_records_are_the_sum_of_its_record_count_metrics(bench: ModuleType) -> None:
    def metric(name: str, value: int, endpoint: str) -> str:
        return "INFO METRIC: " + json.dumps({"type": "counter", "metric": name, "value": value,
                                             "tags": {"endpoint": endpoint}})

    log = "\n".join([metric("record_count", 1000, "prospects"), "INFO prospects - Syncing data since ...",
                     metric("http_request_duration", 3, "prospects"), metric("record_count", 2, "prospects"),
                     metric("record_count", 400, "accounts")])
    assert bench.tap_record_counts(log) == {"prospects": 1002, "accounts": 400}


class _Recorder(BaseHTTPRequestHandler):
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.seen.append(self.path)
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_the_tap_venv_sitecustomize_sends_the_outreach_origin_to_the_base_url(bench: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(bench.SITECUSTOMIZE)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    probe = "import requests; print(requests.Session().get('https://api.outreach.io/api/v2/stages?a=1', timeout=10).json())"
    try:
        for variable, expected in ((f"http://127.0.0.1:{server.server_port}/", ["/api/v2/stages?a=1"]), ("", [])):
            env = {**os.environ, "PYTHONPATH": str(tmp_path), bench.BASE_URL_VARIABLE: variable,
                   "HTTPS_PROXY": "http://127.0.0.1:9"}  # without the rewrite the request fails locally, never leaves
            _Recorder.seen = []
            result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
            assert _Recorder.seen == expected
            assert (result.returncode == 0) == bool(expected), result.stderr[-500:]
    finally:
        server.shutdown()
        server.server_close()
