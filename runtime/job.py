"""A batch job from Python, here or on a cluster: ``transcribe_job(["talks/"], "out/")``.

``runtime transcribe INPUTS -o out/`` is this function: the inputs are listed and planned
(``runtime.output.jobs``), inputs whose outputs exist are skipped, the others are transcribed
and each output is written as its transcription arrives (a ``.part`` file renamed), with a
summary at the end. Only where the transcriptions come from changes: this process (one
``Runtime.transcribe_many`` call, or one by one) or a cluster plugin (``cluster="ray"``), whose
workers each hold one ``Runtime`` and send back transcriptions, never files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtime.cluster import ClusterJob, Resources, find_cluster
from runtime.errors import RuntimeInputError
from runtime.output.jobs import (
    Item,
    Job,
    Result,
    Summary,
    collect_inputs,
    many_results,
    one_by_one_results,
    plan_outputs,
)

if TYPE_CHECKING:
    from runtime.api import Runtime
    from runtime.output.results import Transcription
    from runtime.output.subtitles import SubtitleOptions

Results = Callable[[list[Item]], Iterable[Result]]


def choose_writers(
    rt: Runtime, formats: Sequence[str], subtitles: SubtitleOptions | None = None
) -> dict[str, Any]:
    """The writers of ``formats`` (``"all"``: every registered one), with the subtitle cue
    options bound to the writers built on ``Writer`` (plugin writers may not be)."""
    from runtime.output.writers import Writer

    writers = rt.plugins.writers()
    names = list(writers) if "all" in formats else list(formats)
    unknown = [n for n in names if n not in writers]
    if unknown:
        raise RuntimeInputError(
            f"unknown output format {unknown[0]!r}; choose from {', '.join(writers)} or all"
        )
    chosen: dict[str, Any] = {n: writers[n] for n in names}
    if subtitles is not None:
        chosen = {
            n: partial(w, subtitles) if isinstance(w, type) and issubclass(w, Writer) else w
            for n, w in chosen.items()
        }
    return chosen


def worker_runtime(job: ClusterJob) -> Runtime:
    """What a cluster's worker holds for its whole life: the job's model, settings and profile,
    loaded (a bad model fails the worker at its start, before any input)."""
    from runtime.api import Runtime

    return Runtime(job.model, settings=job.settings).load()


def local_results(
    rt: Runtime,
    kwargs: Mapping[str, Any],
    sequential: bool = False,
    transcribe_one: Callable[[Path], Transcription] | None = None,
) -> Results:
    """Transcriptions from this process: several inputs through one ``transcribe_many`` call
    (shared batches); one input, or ``sequential``, one by one (``transcribe_one``, default
    ``Runtime.transcribe`` with the same options)."""
    one = transcribe_one or (lambda p: rt.transcribe(p, sequential=sequential, **kwargs))

    def results(todo: list[Item]) -> Iterable[Result]:
        if len(todo) == 1 or sequential:
            return one_by_one_results(one, todo)
        return many_results(rt, todo, **kwargs)

    return results


def cluster_results(
    rt: Runtime,
    cluster: str,
    address: str | None,
    kwargs: Mapping[str, Any],
    options: Mapping[str, Any] | None = None,
) -> Results:
    """Transcriptions from the cluster plugin called ``cluster`` (at ``address``; None: the
    plugin's default, for Ray a new local instance). Its workers run ``rt``'s model and profile
    with the same options; each asks for the profile's ``[resources]``."""
    found = find_cluster(rt.plugins.clusters(), cluster)
    if not isinstance(rt.model_spec, (str, Path)):
        raise RuntimeInputError("a job on a cluster needs the model as a name or folder")
    profile = rt.selection.profile if rt.selection else None
    settings = rt.settings.model_copy(update={"profile": profile.name}) if profile else rt.settings
    extra = dict(kwargs)
    job = ClusterJob(
        settings=settings,
        model=str(rt.model_spec),
        resources=profile.resources if profile else Resources(),
        language=extra.pop("language", None),
        task=extra.pop("task", "transcribe"),
        batch_size=extra.pop("batch_size", None),
        chunking=extra.pop("chunking", None),
        overrides=extra,
        options=dict(options or {}),
    )
    return lambda todo: found.results(address, job, todo)


def transcribe_job(
    inputs: Sequence[str | Path],
    output_dir: str | Path,
    *,
    formats: Sequence[str] = ("txt",),
    runtime: Runtime | None = None,
    cluster: str | None = None,
    address: str | None = None,
    cluster_options: Mapping[str, Any] | None = None,
    input_list: str | Path | None = None,
    overwrite: bool = False,
    subtitles: SubtitleOptions | None = None,
    echo: Callable[[Item, Transcription], None] | None = None,
    progress: bool = True,
    verbose: bool = False,
    sequential: bool = False,
    **transcribe: Any,
) -> Summary:
    """Transcribe files and folders into ``output_dir`` (one file per input and format,
    mirroring the inputs' folders), skipping inputs whose outputs exist unless ``overwrite``.

    ``cluster="ray"`` runs the transcriptions on Ray (``address``: ``None`` starts a local
    instance, ``"auto"`` joins the cluster this machine belongs to, ``"ray://host:10001"``
    connects as a client); ``cluster_options`` are the plugin's own. ``transcribe`` keywords
    (``language``, ``task``, ``batch_size``, ``chunking``, any ``TranscribeOptions`` field)
    apply to every input. Returns the summary: done, skipped and failed inputs with reasons."""
    from runtime.api import Runtime

    rt = runtime or Runtime()
    writers = choose_writers(rt, formats, subtitles)  # keyed by extension
    listed = [str(i) for i in inputs]
    found, empty = collect_inputs(listed, Path(input_list) if input_list else None)
    items = plan_outputs(found, Path(output_dir), list(writers))
    if cluster:
        results = cluster_results(rt, cluster, address, transcribe, cluster_options)
    else:
        results = local_results(rt, transcribe, sequential)
    job = Job(items, writers, overwrite=overwrite, echo=echo, progress=progress, verbose=verbose)
    return job.run(results, empty)
