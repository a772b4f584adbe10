"""Scratch: where do the ms between queued_at and started_at go?"""
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
from service.client import AblationClient  # noqa: E402
from service.records import read_status  # noqa: E402

ROOT = HERE.parent
N = int(sys.argv[1]) if len(sys.argv) > 1 else 10
ACK = os.environ.get("DIAG_ACK") == "1"
EXTRA = sys.argv[2:]
BROKER = "redis://127.0.0.1:6379/0"


def spec(seed):
    return {
        "name": "diag",
        "dataset": {"kind": "synthetic", "image_size": 8, "classes": 2, "samples_per_class": 8},
        "model": {"conv_blocks": [{"filters": 4}], "dense": []},
        "training": {"epochs": 1, "batch_size": 16},
        "ablation": {"seeds": [seed]},
    }


def ts(text):
    return datetime.fromisoformat(text).timestamp()


tmp = Path(tempfile.mkdtemp(prefix="diag-"))
queue = f"diag-{uuid.uuid4().hex[:8]}"
log = tmp / "w.log"
env = {**os.environ, "ABLATE_STORE": str(tmp / "s"), "ABLATE_QUEUE": queue, "ABLATE_BROKER_URL": BROKER, "TF_CPP_MIN_LOG_LEVEL": "2"}
p = subprocess.Popen([sys.executable, str(HERE / "_diag_worker.py"), "-c", "1", "-n", f"{queue}@%h", *EXTRA], cwd=ROOT, env=env,
                     stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
try:
    while " ready." not in log.read_text():
        assert p.poll() is None, log.read_text()
        time.sleep(0.1)
    client = AblationClient(broker_url=BROKER, store_url=str(tmp / "s"), queue=queue)
    sends = {}
    original = client.celery.send_task

    def send_task(*a, **k):
        t0 = time.time()
        r = original(*a, **k)
        sends[k["task_id"]] = (t0, time.time())
        return r

    client.celery.send_task = send_task
    client.submit(spec(0)).wait(poll_seconds=0.05)
    rows = []
    for i in range(1, N + 1):
        study = client.submit(spec(i))
        (run_id,) = study.run_ids
        while (s := read_status(client.store, run_id)) is None or not s.started_at:
            time.sleep(0.005)
        seen = time.time()
        study.wait(poll_seconds=0.005)
        if ACK:
            import redis
            b = redis.Redis.from_url(BROKER)
            while any(s.task_id.encode() in m for m in b.hvals("unacked")):
                time.sleep(0.005)
        rows.append((s, seen))
    time.sleep(0.5)
    text = log.read_text()
    events = {}
    for m in re.finditer(r"DIAG (\w+) ([\d.]+) (\S+)", text):
        events.setdefault(m.group(3), {})[m.group(1)] = float(m.group(2))
    cols = {"send": [], "send->recv": [], "recv->prerun": [], "prerun->started": [], "queued->started": [], "postrun->nextrecv?": []}
    prev = None
    for s, _seen in rows:
        e = events.get(s.task_id, {})
        send0, send1 = sends[s.task_id]
        q, st = ts(s.queued_at), ts(s.started_at)
        cols["send"].append(1000 * (send1 - send0))
        cols["send->recv"].append(1000 * (e["received"] - send0))
        cols["recv->prerun"].append(1000 * (e["prerun"] - e["received"]))
        cols["prerun->started"].append(1000 * (st - e["prerun"]))
        cols["queued->started"].append(1000 * (st - q))
        if prev is not None:
            cols["postrun->nextrecv?"].append(1000 * (e["received"] - events[prev]["postrun"]))
        prev = s.task_id
    for k, v in cols.items():
        if v:
            print(f"{k:<20} median {statistics.median(v):8.1f} ms  min {min(v):8.1f}  max {max(v):8.1f}")
    print("log tail:\n" + "\n".join(text.splitlines()[-8:]))
finally:
    os.killpg(p.pid, signal.SIGTERM)
    p.wait(timeout=30)
