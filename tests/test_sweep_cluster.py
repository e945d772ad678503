"""Sweeps on real multi-node Ray clusters on loopback (run in subprocesses: they cannot share this
process with the session's embedded Ray).

1. ``ray.cluster_utils.Cluster``: a driver-only head and two worker raylets; one worker node is
   killed mid-sweep; the result must equal the serial evaluation.
2. ``ray start --head`` on 127.0.0.1 with its own temp dir and ports, then ``ray job submit`` of
   ``foliotune sweep ...``; that head is stopped through its own process group (never ``ray stop``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from sweep.runner import run_sweep
from sweep.spec import spec_from_toml

REPO = Path(__file__).absolute().parent.parent
BIN = Path(sys.executable).parent

SPEC = """
[sweep]
seed = 5
models = ["analytic", "montecarlo"]
replicas = 8
[fixed]
profile = "epyc-zen3-2s"
[axes]
batch_limit_pages = { log2_start = 0, log2_stop = 12 }
folio_kb = [4, 16, 64, 512, 2048]
copy_engine = ["cpu", "mt-cpu", "dma"]
copy_threads = [1, 2, 4, 8]
busy_prob = { start = 0.0, stop = 0.2, num = 4 }
"""

MULTINODE = r"""
import json, sys, threading, time
from pathlib import Path
T0 = time.time()
def log(msg):
    print(f"{time.time() - T0:6.1f}s {msg}", file=sys.stderr, flush=True)
from ray.cluster_utils import Cluster
from sweep.runner import run_sweep

spec_file, out = sys.argv[1], Path(sys.argv[2])
fast_failure = {"health_check_period_ms": 500, "health_check_failure_threshold": 3}
cluster = Cluster(initialize_head=True, head_node_args={
    "num_cpus": 0, "node_ip_address": "127.0.0.1", "include_dashboard": False, "_system_config": fast_failure})
workers = [cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1") for _ in range(2)]
cluster.wait_for_nodes()
log("cluster up")
box = {}

def run():
    try:
        box["summary"] = run_sweep(spec_file, out, address=cluster.address, chunk_points=60, progress=False)
    except BaseException as exc:
        box["error"] = repr(exc)

t = threading.Thread(target=run)
t.start()
while t.is_alive() and len(list(out.glob("part-*.parquet"))) < 12:
    time.sleep(0.02)
log("12 chunks written")
killed = False
if t.is_alive():
    cluster.remove_node(workers[0], allow_graceful=False)  # a whole node dies mid-sweep
    killed = True
t.join()
log("sweep done")
result = {"killed_node": killed, "error": box.get("error")}
if "summary" in box:
    result["summary"] = box["summary"].to_dict()
cluster.shutdown()
print("RESULT " + json.dumps(result))
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env.pop("RAY_ADDRESS", None)
    env.setdefault("RAY_AUTH_MODE", "token")  # the head and `ray job submit` agree on token authentication
    return env


def _reference(spec_file: Path, tmp: Path, chunk_points: int) -> pd.DataFrame:
    """The spec evaluated in this process (bit for bit the same whatever the chunk size:
    tests/test_sweep_run.py::test_values_do_not_depend_on_chunk_size; a different one is used here)."""
    out = tmp / "reference"
    run_sweep(
        spec_from_toml(spec_file.read_text()),
        out,
        chunk_points=chunk_points,
        progress=False,
        backend="serial",
    )
    return pd.read_parquet(out)


def _group_members(pgid: int) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) == pgid and fields[0] != "Z":
                    pids.append(int(d.name))
    return pids


def _stop_group(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> None:
    """Stop a process we started in its own session and everything in its process group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    deadline = time.monotonic() + 20
    while _group_members(proc.pid) and time.monotonic() < deadline:
        proc.poll()
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=20)


@pytest.mark.slow
def test_multinode_cluster_with_a_node_killed_equals_serial(tmp_path: Path) -> None:
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(SPEC)
    script = tmp_path / "multinode.py"
    script.write_text(MULTINODE)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(spec_file), str(out)],
        cwd=REPO,
        env=_env(),
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=240)
    finally:
        _stop_group(proc, signal.SIGKILL)  # anything the script left behind is in its process group
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT ") :])
    assert result["error"] is None, result["error"]
    assert result["killed_node"], "the sweep finished before a node could be killed"
    assert result["summary"]["nodes"] >= 2, result["summary"]  # chunks really ran on several raylets
    pd.testing.assert_frame_equal(
        pd.read_parquet(out), _reference(spec_file, tmp_path, 1000), check_exact=True
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_ray_job_submit_to_a_head_on_loopback(tmp_path: Path) -> None:
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(SPEC)
    out = tmp_path / "out"
    temp_dir = Path("/tmp") / f"ft-ray-{os.getpid()}-{_free_port()}"  # short: Ray's socket paths are limited
    dash = _free_port()
    ports = {
        "--port": _free_port(),
        "--dashboard-port": dash,
        "--ray-client-server-port": _free_port(),
        "--dashboard-agent-listen-port": _free_port(),
        "--dashboard-agent-grpc-port": _free_port(),
        "--runtime-env-agent-port": _free_port(),
        "--metrics-export-port": _free_port(),
        "--node-manager-port": _free_port(),
        "--object-manager-port": _free_port(),
    }
    cmd = [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1"]
    cmd += ["--temp-dir", str(temp_dir), "--num-cpus", "2", "--include-dashboard", "true"]
    cmd += ["--dashboard-host", "127.0.0.1", "--disable-usage-stats"]
    for k, v in ports.items():
        cmd += [k, str(v)]
    head = subprocess.Popen(
        cmd, env=_env(), start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        url = f"http://127.0.0.1:{dash}"
        deadline = time.monotonic() + 120
        while True:
            assert head.poll() is None, head.stderr.read() if head.stderr else ""
            try:
                with urllib.request.urlopen(f"{url}/api/version", timeout=2):
                    break
            except urllib.error.HTTPError:
                break  # answering (401 when token authentication is on): up
            except OSError:
                pass
            assert time.monotonic() < deadline, "the Ray head's dashboard never answered"
            time.sleep(0.5)
        foliotune = BIN / "foliotune"
        entry = [str(foliotune)] if foliotune.exists() else [sys.executable, "-m", "app.cli"]
        entry += [
            "sweep",
            str(spec_file),
            "--out",
            str(out),
            "--chunk-points",
            "200",
            "--no-progress",
            "--json",
        ]
        runtime_env = {"env_vars": {"PYTHONPATH": _env()["PYTHONPATH"]}}
        submit = [str(BIN / "ray"), "job", "submit", "--address", url]
        submit += ["--runtime-env-json", json.dumps(runtime_env), "--", *entry]
        job = subprocess.run(submit, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
        assert "succeeded" in (job.stdout + job.stderr).lower()
    finally:
        _stop_group(head)  # this head only: its own process group, never `ray stop`
        shutil.rmtree(temp_dir, ignore_errors=True)
    summary_text = job.stdout[job.stdout.index("{") : job.stdout.rindex("}") + 1]
    summary = json.loads(summary_text)
    assert summary["chunks_run"] == summary["chunks_total"] and "ray" in summary["backend"]
    pd.testing.assert_frame_equal(
        pd.read_parquet(out), _reference(spec_file, tmp_path, 1000), check_exact=True
    )
