"""The worker Deployment: labels and names that tie it to the PodDisruptionBudget and the
ScaledObject, a command `ablate worker` accepts, one GPU per pod, probes that are the image's
HEALTHCHECK and ping the node name the GPU supervisor gives the worker, a grace period and a
preStop hook (run here against a stand-in for PID 1) that let running runs checkpoint, and pods
locked down to the restricted Pod Security Standard."""

from __future__ import annotations

import copy
import json
import re
import shlex
import subprocess
import sys
import time

import yaml

from tests.k8s_manifests import (
    COMPOSE,
    K8S,
    MANIFESTS,
    dockerfile,
    dockerfile_instruction,
    documents,
    gpus_per_pod,
    worker_options,
)

# The seconds every worker gets to stop warm, in compose (stop_grace_period) and here: an epoch
# of a small CNN on a GPU takes seconds to a minute and its checkpoint is megabytes, so two
# minutes is the floor for "finish the epoch, upload its checkpoint, requeue the run".
MIN_GRACE_SECONDS = 120


def test_everything_lives_in_the_namespace(namespace):
    for path in MANIFESTS:
        for doc in documents(path):
            if doc["kind"] not in ("Namespace", "Kustomization"):
                assert doc["metadata"]["namespace"] == namespace["metadata"]["name"], (
                    f"{path}: {doc['kind']}"
                )


def test_labels_tie_the_deployment_pdb_and_scaled_object_together(deployment, pdb, scaled_object):
    selector = deployment["spec"]["selector"]["matchLabels"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()
    assert pdb["spec"]["selector"] == {"matchLabels": selector}
    target = scaled_object["spec"]["scaleTargetRef"]
    assert target["name"] == deployment["metadata"]["name"]
    assert target.get("kind", "Deployment") == deployment["kind"]
    assert target.get("apiVersion", "apps/v1") == deployment["apiVersion"]
    # KEDA owns the replica count: re-applying the manifests must not reset it.
    assert "replicas" not in deployment["spec"]


def test_worker_reads_the_configmap_and_the_secret(worker, config, secret):
    sources = worker["envFrom"]
    assert {"configMapRef": {"name": config["metadata"]["name"]}} in sources
    assert {"secretRef": {"name": secret["metadata"]["name"]}} in sources


def test_worker_command_is_accepted_by_ablate_worker(worker):
    # click parses the manifest's arguments exactly as `ablate worker` will (options it does not
    # know, or values out of range, raise here).
    params = worker_options(worker)
    assert params["runs_per_gpu"] == 2
    assert params["hostname"]


def test_one_gpu_per_pod_on_gpu_nodes(worker, deployment):
    resources = worker["resources"]
    # Extended resources: a request, if given, must equal the limit.
    assert (
        resources["requests"].get("nvidia.com/gpu", resources["limits"]["nvidia.com/gpu"])
        == resources["limits"]["nvidia.com/gpu"]
    )
    assert gpus_per_pod(worker) == 1  # KEDA scales pods, so one pod = one GPU
    assert {"cpu", "memory"} <= resources["requests"].keys()
    assert "memory" in resources["limits"]
    tolerations = deployment["spec"]["template"]["spec"]["tolerations"]
    assert any(t["key"] == "nvidia.com/gpu" and t["effect"] == "NoSchedule" for t in tolerations)


def test_probes_run_the_images_health_check_against_this_worker(worker):
    from workers.gpus import Gpu, worker_hostname

    healthcheck = json.loads(dockerfile_instruction("HEALTHCHECK").partition(" CMD ")[2])
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert worker[probe]["exec"]["command"] == healthcheck, probe
    # The ping's --destination is the node name `ablate worker` gives this pod's one GPU worker.
    command = shlex.split(healthcheck[2].split("||")[0])
    destination = command[command.index("--destination") + 1]
    gpu = Gpu(index=0, name="NVIDIA H100 80GB HBM3", memory_mb=81559)
    node = worker_hostname(gpu, worker_options(worker)["hostname"], gpus_per_pod(worker))
    assert node.replace("%h", "$HOSTNAME") == destination
    # kubelet must not cut the probe off before Celery's own reply timeout.
    ping_timeout = float(command[command.index("--timeout") + 1])
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert worker[probe]["timeoutSeconds"] > ping_timeout + 5, probe


def test_liveness_rides_out_a_redis_restart(worker):
    # The ping goes through Redis: a liveness probe quicker than a Redis restart would restart
    # every worker (and cost every running run its epoch) whenever Redis restarts.
    liveness = worker["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 300


def duration_seconds(value: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+)(h|m|s)", value)
    assert parts and "".join(n + u for n, u in parts) == value, f"bad duration {value!r}"
    return sum(int(n) * units[u] for n, u in parts)


def test_grace_period_lets_running_runs_checkpoint(deployment, config):
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    compose_grace = duration_seconds(
        yaml.safe_load(COMPOSE.read_text())["services"]["worker"]["stop_grace_period"]
    )
    assert grace >= max(MIN_GRACE_SECONDS, compose_grace)
    # ... and a worker SIGKILLed after it leaves its runs unacknowledged until the visibility
    # timeout: the grace period must be far below it to be worth waiting for.
    assert grace < int(config["data"]["ABLATE_VISIBILITY_TIMEOUT"]) / 10


def test_stop_signal_is_sigterm():
    # The kubelet sends the image's STOPSIGNAL after the preStop hook: the same warm shutdown.
    assert dockerfile_instruction("STOPSIGNAL") == "SIGTERM"


TERM_COUNTER = """
import signal, sys, time
count = 0
def on_term(*_):
    global count
    count += 1
    print("term", flush=True)
signal.signal(signal.SIGTERM, on_term)
print("ready", flush=True)
while not count:
    time.sleep(0.01)
time.sleep(1.5)  # the warm shutdown: finishing the epoch, uploading the checkpoint
print(f"signals={count}", flush=True)
"""


def test_pre_stop_hook_signals_pid_1_once_and_waits_for_it_to_exit(worker):
    argv = worker["lifecycle"]["preStop"]["exec"]["command"]
    assert argv[:2] == ["/bin/sh", "-c"]
    script = argv[2]
    assert len(re.findall(r"kill -(?:TERM|15) 1\b", script)) == 1
    # Run the hook against a stand-in for PID 1 that counts SIGTERMs and takes 1.5 s to stop.
    target = subprocess.Popen(
        [sys.executable, "-c", TERM_COUNTER], stdout=subprocess.PIPE, text=True
    )
    hook = None
    try:
        assert target.stdout.readline().strip() == "ready"
        hook = subprocess.Popen(
            ["/bin/sh", "-c", re.sub(r"(kill -\w+) 1\b", rf"\1 {target.pid}", script)]
        )
        assert target.stdout.readline().strip() == "term"
        time.sleep(0.5)
        assert hook.poll() is None, "the hook returned while PID 1 was still shutting down"
        target.wait(timeout=10)
        assert hook.wait(timeout=10) == 0
        assert target.stdout.read().strip() == "signals=1"
    finally:
        for process in (target, hook):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()


def test_worker_runs_locked_down_and_writes_only_to_its_volumes(deployment, worker):
    pod = deployment["spec"]["template"]["spec"]
    uid = int(dockerfile_instruction("USER").split(":")[0])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == uid
    assert pod["automountServiceAccountToken"] is False
    context = worker["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    # What the worker writes: temporary files, its home (Keras, matplotlib, CUDA caches) and the
    # dataset cache. Each must lie on a writable volume.
    useradd = next(
        line for line in dockerfile().splitlines() if "useradd" in line and "--create-home" in line
    )
    user = useradd.split()[-1]
    env = {item["name"]: item["value"] for item in worker.get("env", [])}
    needed = ["/tmp", f"/home/{user}", env["ABLATE_DATASET_CACHE"]]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    writable = [
        m["mountPath"]
        for m in worker["volumeMounts"]
        if not m.get("readOnly") and "emptyDir" in volumes[m["name"]]
    ]
    for path in needed:
        assert any(
            path == mount or path.startswith(mount.rstrip("/") + "/") for mount in writable
        ), path


def test_the_cuda_jit_cache_outlives_the_pod(deployment, worker):
    pod = deployment["spec"]["template"]["spec"]
    cache = next(
        line.split("=", 1)[1].split()[0]
        for line in dockerfile().splitlines()
        if "CUDA_CACHE_PATH=" in line
    )
    (mount,) = [m for m in worker["volumeMounts"] if m["mountPath"] == cache]
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    claim = volume["persistentVolumeClaim"]["claimName"]
    (pvc,) = [
        doc for doc in documents(K8S / "cuda-cache.yaml") if doc["kind"] == "PersistentVolumeClaim"
    ]
    assert pvc["metadata"]["name"] == claim and pvc["spec"]["accessModes"] == [
        "ReadWriteMany"
    ]  # every pod
    assert not mount.get("readOnly")


def restricted_violations(pod: dict) -> list[str]:
    """What the "restricted" Pod Security Standard refuses in a pod spec."""
    problems = []
    allowed_volumes = {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
    for volume in pod.get("volumes", []):
        if not set(volume) - {"name"} <= allowed_volumes:
            problems.append(f"volume {volume['name']}")
    problems += [key for key in ("hostNetwork", "hostPID", "hostIPC") if pod.get(key)]
    pod_context = pod.get("securityContext", {})
    for container in [*pod.get("initContainers", []), *pod["containers"]]:
        name, context = container["name"], container.get("securityContext", {})
        if context.get("privileged"):
            problems.append(f"{name}: privileged")
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation")
        if context.get("runAsNonRoot", pod_context.get("runAsNonRoot")) is not True:
            problems.append(f"{name}: runAsNonRoot")
        if context.get("runAsUser", pod_context.get("runAsUser")) == 0:
            problems.append(f"{name}: runAsUser 0")
        seccomp = context.get("seccompProfile", pod_context.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile")
        capabilities = context.get("capabilities", {})
        if "ALL" not in capabilities.get("drop", []) or set(capabilities.get("add", [])) - {
            "NET_BIND_SERVICE"
        }:
            problems.append(f"{name}: capabilities")
    return problems


def test_pods_meet_the_restricted_pod_security_standard(namespace, deployment, redis_sts):
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for owner in (deployment, redis_sts):
        assert restricted_violations(owner["spec"]["template"]["spec"]) == [], owner["metadata"][
            "name"
        ]
    # The check itself refuses what the standard refuses.
    loose = copy.deepcopy(deployment["spec"]["template"]["spec"])
    del loose["containers"][0]["securityContext"]["capabilities"]
    loose["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    assert len(restricted_violations(loose)) == 2
