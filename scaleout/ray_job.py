"""A batch job's transcriptions on Ray Data: one actor per worker, each holding one ``Runtime``.

The driver lists and plans the inputs, skips those already done and writes every output (the
local job's code, ``runtime.output.jobs``); this module only replaces where transcriptions come
from. The inputs go out as rows of (index, absolute path), ``files_per_task`` to a task; each
actor loads the model once (``Transcriber.__init__``) and keeps one ``Engine`` for its life, so
the chunks of every file it holds share encoder and decoder batches (two tasks run in it at
once, so a task's last files share batches with the next task's first). A task returns each
file's pickled ``Transcription`` or its one-line error, never a file.

Exactly once: Ray restarts an actor whose process dies and runs its tasks again, and Ray Data
hands each row to the driver once, so the driver, the only writer, writes each output once
(``.part`` and rename, as locally). A worker that dies mid-task leaves nothing on disk.
"""

from __future__ import annotations

import math
import os
import pickle
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from runtime.cluster import ClusterJob, WorkerInputError
from runtime.errors import RuntimeInputError, one_line
from runtime.output.jobs import Item, Result, failure_reason
from scaleout.connect import connected, fits, largest_node_cpus

FILES_PER_TASK = 16  # two engine batches of files: small enough to balance, big enough to batch
CONCURRENT_TASKS = 2  # per actor: the next task's files fill the batches the last one leaves
JOB_OPTIONS = {
    "workers": "most actors (default: as many as the cluster's CPUs/GPUs fit)",
    "cpus": "CPUs per actor (default: the profile's [resources])",
    "gpus": "GPUs per actor (default: the profile's [resources])",
    "files_per_task": f"inputs sent to an actor at once (default {FILES_PER_TASK})",
}


class Transcriber:
    """One Ray Data actor: one ``Runtime`` and one ``Engine`` for its whole life."""

    def __init__(self, job: ClusterJob) -> None:
        from runtime.job import worker_runtime

        self.rt = worker_runtime(job)
        kwargs = job.transcribe_kwargs()
        language, task = kwargs.pop("language"), kwargs.pop("task")
        self.options = self.rt.transcribe_options(None, language, task, kwargs)
        chunking: Any = job.chunking
        self.engine = self.rt.engine(
            batch_size=job.batch_size, chunking=chunking, max_wait_s=0.0, max_queue=None
        ).start()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        """Each path of the batch through the shared engine; results in the batch's order."""
        paths = [str(p) for p in batch["path"]]
        futures: list[Any] = []  # a Future, or the error submit raised
        for path in paths:
            try:
                futures.append(self.engine.submit(path, options=self.options))
            except Exception as exc:  # noqa: BLE001 - reported as this input's failure
                futures.append(exc)
        done: list[bytes] = []
        errors: list[str] = []
        for path, future in zip(paths, futures):
            try:
                if isinstance(future, Exception):
                    raise future
                done.append(pickle.dumps(future.result()))
                errors.append("")
            except Exception as exc:  # noqa: BLE001 - one input's failure never stops the job
                done.append(b"")
                errors.append(failure_reason(path, exc))
        return {"index": list(batch["index"]), "transcription": done, "error": errors}


def _pool(job: ClusterJob, n_items: int) -> dict[str, Any]:
    """``map_batches`` arguments: resources per actor, the pool's size, files per task."""
    from ray import cluster_resources
    from ray.data import ActorPoolStrategy

    options = dict(job.options)
    unknown = sorted(set(options) - set(JOB_OPTIONS))
    if unknown:
        known = "; ".join(f"{k} ({v})" for k, v in JOB_OPTIONS.items())
        raise RuntimeInputError(f"--ray-option {unknown[0]}: unknown for a job; known: {known}")
    cpus = min(float(options.get("cpus", job.resources.cpus)), largest_node_cpus() or math.inf)
    gpus = float(options.get("gpus", job.resources.gpus))
    per_task = int(options.get("files_per_task", FILES_PER_TASK))
    total = cluster_resources()
    fit = min(fits(cpus, total.get("CPU", 0.0)), fits(gpus, total.get("GPU", 0.0)))
    workers = int(options.get("workers", fit))
    workers = max(1, min(workers, math.ceil(n_items / per_task)))
    if gpus > 0 and not total.get("GPU"):
        raise RuntimeInputError(f"the profile's workers need {gpus:g} GPU each; Ray found none")
    return dict(
        batch_size=per_task,
        num_cpus=cpus,
        num_gpus=gpus or None,
        compute=ActorPoolStrategy(
            min_size=1,
            max_size=workers,
            initial_size=workers,
            max_concurrent_calls_per_actor=CONCURRENT_TASKS,
            enable_true_multi_threading=True,
        ),
    )


def _dataset(job: ClusterJob, items: Sequence[Item]):
    """The job's rows mapped by a pool of ``Transcriber`` actors."""
    import ray.data
    from ray.data import DataContext

    _quiet_console()
    context = DataContext.get_current()
    context.enable_progress_bars = False  # the job draws its own bar, in hours of audio
    context.print_on_execution_start = False
    pool = _pool(job, len(items))
    rows = [{"index": i, "path": os.path.abspath(item.source)} for i, item in enumerate(items)]
    blocks = max(1, math.ceil(len(rows) / pool["batch_size"]))
    dataset = ray.data.from_items(rows, override_num_blocks=blocks)
    return dataset.map_batches(
        Transcriber, fn_constructor_kwargs={"job": job}, batch_format="numpy", **pool
    )


def _quiet_console() -> None:
    """Ray Data's console shows warnings only (its INFO lines and full log stay in
    /tmp/ray/session_*/logs/ray-data), and not the note that we turned its bars off."""
    import logging

    for handler in logging.getLogger("ray.data").handlers:
        if not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.WARNING)
            handler.addFilter(lambda r: not r.getMessage().startswith("Progress bars disabled"))


def results(address: str | None, job: ClusterJob, items: Sequence[Item]) -> Iterator[Result]:
    """Each item once, as its task finishes (any order): its transcription or its error. If
    the whole job fails (no worker can load the model), every input not yet done fails with
    that reason; the job itself goes on to its summary."""
    seen: set[int] = set()
    with connected(address):
        try:
            for row in _dataset(job, items).iter_rows():
                index = int(row["index"])
                seen.add(index)
                yield _result(items[index], row)
        except RuntimeInputError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported per input below
            reason = _job_failure(exc)
            for index, item in enumerate(items):
                if index not in seen:
                    failure = WorkerInputError(f"{item.source}: the Ray job failed: {reason}")
                    yield item, None, failure


def _result(item: Item, row: dict[str, Any]) -> Result:
    """A row back as the local job's result: the transcription, or the worker's error line
    naming the input as the job was given it (the worker saw its absolute path)."""
    if row["error"]:
        local = one_line(str(item.source))
        reason = str(row["error"]).replace(one_line(os.path.abspath(item.source)), local)
        return item, None, WorkerInputError(reason)
    return item, pickle.loads(row["transcription"]), None


def _job_failure(exc: BaseException) -> str:
    """The last line of a Ray error that says what happened (Ray's errors carry tracebacks)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("File ", "Traceback", "^"))]
    return one_line((useful or [type(exc).__name__])[-1])[:300]
