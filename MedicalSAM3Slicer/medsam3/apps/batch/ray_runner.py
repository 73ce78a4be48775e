"""Running a batch's cases on a Ray cluster: one model per worker, loaded once; cases go to workers as they free up.

Workers are Ray actors. With GPUs in the cluster each worker holds one whole GPU; without, each holds
``cpus_per_worker`` CPUs and runs PyTorch with that many threads. A worker that dies (killed, out of memory, its
node lost) has its case put back at the head of the queue for another worker, and is replaced; a case whose worker
died ``MAX_ATTEMPTS`` times is logged as failed. Every worker runs the same :func:`.case_runner.run_case` as a
local run, so inputs and the output folder must be on a file system every node sees at the same path.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections import Counter, deque
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Sequence

from ... import __version__ as ENGINE_VERSION
from ...errors import MedSam3Error
from .case_runner import BackendFactory, BackendUnavailable, CaseJob, LazyBackend, base_record, run_case, worker_name
from .progress import Progress

MAX_ATTEMPTS = 3
LOCAL = "local"


class CaseWorker:
    """A Ray actor's body: one backend, loaded once by :meth:`load`, then one case per :meth:`run` call."""

    def __init__(self, factory: BackendFactory, model: str | None, device: str | None, threads: int | None):
        if threads:
            import torch

            torch.set_num_threads(threads)
        self.backend = LazyBackend(factory, model, device)

    def load(self) -> dict:
        self.backend.get()
        return {"worker": worker_name(), **self.backend.description()}

    def run(self, job: CaseJob) -> dict:
        return run_case(job, self.backend)


@dataclass(frozen=True)
class RayPlan:
    address: str = LOCAL  # "local": start a cluster on this machine; else a Ray address ("auto", "ray://host:port")
    workers: int | None = None  # default: one per GPU, else one per cpus_per_worker CPUs
    cpus_per_worker: int | None = None  # default 4 (fewer on a machine with fewer CPUs)


def connect(address: str) -> bool:
    """Connect to (or start) the cluster; True when this call started the connection (and should end it)."""
    import ray

    if ray.is_initialized():  # e.g. a test, or a program that set Ray up itself
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage reports sent from a hospital's network
    options = dict(log_to_driver=False, logging_level="WARNING")
    if address == LOCAL:
        # Ray's servers (GCS, raylet, workers) listen on every interface: Ray 2.60 turns a loopback node address
        # into the machine's own and offers no loopback-only mode. What keeps others out is token authentication:
        # every call must carry a token, here a fresh one per run, held only in the environment of this user's
        # processes (never written to ~/.ray, where other local users might read it). No dashboard. An unset
        # RAY_AUTH_MODE is what makes ray.init turn token authentication on for a new cluster (a "disabled" is
        # dropped: this cluster is never left open).
        os.environ.pop("RAY_AUTH_MODE", None)
        os.environ.pop("RAY_AUTH_TOKEN_PATH", None)
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
        # Ray's own note on this ("Set RAY_AUTH_MODE=disabled to opt out") does not apply to this cluster
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
        ray.init(include_dashboard=False, **options)
    else:
        ray.init(address=address, **options)
    return True


def _worker_options(plan: RayPlan, device: str | None) -> tuple[int, dict, str | None, int | None]:
    """(number of workers, actor resources, device, torch threads) for this cluster."""
    import ray

    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
    if gpus and (device is None or device.startswith("cuda")):
        count = min(plan.workers or gpus, gpus)
        # Ray shows each worker only its own GPU (CUDA_VISIBLE_DEVICES), so "cuda:1" becomes that worker's "cuda"
        return count, {"num_gpus": 1, "num_cpus": 1}, "cuda", None
    per_worker = plan.cpus_per_worker or max(1, min(4, cpus))
    count = plan.workers or max(1, cpus // per_worker)
    return count, {"num_cpus": per_worker, "num_gpus": 0}, device or "cpu", per_worker


def _worker_died_record(job: CaseJob, error: BaseException, attempts: int) -> dict:
    return {**base_record(job, "failed"), "engine_version": ENGINE_VERSION,
            "error": f"the worker running this case died {attempts} times ({type(error).__name__}); the case may "
                     "need more memory than a worker has",
            "seconds": 0.0, "timings": {},
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _cause(error: BaseException) -> str:
    cause = getattr(error, "cause", None)
    return str(cause) if cause is not None else str(error).strip().splitlines()[-1]


def run_on_ray(jobs: Sequence[CaseJob], factory: BackendFactory, model: str | None, device: str | None,
               plan: RayPlan, on_record: Callable[[dict], None], progress: Progress) -> None:
    """Run every job on the cluster; ``on_record`` gets each record as its case finishes."""
    import ray
    from ray.exceptions import RayActorError, RayTaskError

    started_here = connect(plan.address)
    workers: list = []
    try:
        count, resources, worker_device, threads = _worker_options(plan, device)
        count = max(1, min(count, len(jobs)))
        actor = ray.remote(CaseWorker)
        each = "1 GPU" if resources["num_gpus"] else f"{resources['num_cpus']} CPUs"
        progress.workers = count
        progress.note(f"Ray: {count} workers ({each} each, model loaded once per worker), {len(jobs)} cases")

        def new_worker():
            handle = actor.options(max_restarts=0, max_task_retries=0, **resources).remote(
                factory, model, worker_device, threads)
            workers.append(handle)
            pending[handle.load.remote()] = (handle, None)

        deaths = 0
        pending: dict = {}  # object ref -> (worker, job); job None: the worker is loading its model
        queue, idle, attempts = deque(jobs), [], Counter()
        for _ in range(count):
            new_worker()
        while queue or any(job is not None for _, job in pending.values()):
            while queue and idle:
                worker, job = idle.pop(), queue.popleft()
                pending[worker.run.remote(job)] = (worker, job)
            if not pending:
                raise MedSam3Error("Ray: no worker is left to run the remaining cases.")
            [ready], _ = ray.wait(list(pending), num_returns=1)
            worker, job = pending.pop(ready)
            try:
                result = ray.get(ready)
            except RayActorError as error:  # the worker process died: retry its case elsewhere, replace it
                ray.kill(worker)
                deaths += 1
                if job is not None:
                    attempts[job.case.case_id] += 1
                    if attempts[job.case.case_id] < MAX_ATTEMPTS:
                        queue.appendleft(job)
                        progress.note(f"Ray: the worker running {job.case.case_id} died; the case goes to another worker")
                    else:
                        on_record(_worker_died_record(job, error, attempts[job.case.case_id]))
                if deaths < MAX_ATTEMPTS * (count + len(jobs)):
                    new_worker()
                continue
            except RayTaskError as error:
                if job is None:  # loading the model failed: every worker would fail the same way
                    raise BackendUnavailable(f"Ray worker: {_cause(error)}") from None
                raise
            idle.append(worker)
            if job is not None:
                on_record(result)
    finally:
        for worker in workers:
            ray.kill(worker)  # the models' memory is given back now, also on a cluster that outlives this batch
        if started_here:
            ray.shutdown()
