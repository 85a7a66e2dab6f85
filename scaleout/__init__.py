"""Beyond one machine: batch jobs on Ray Data and the server as Ray Serve replicas.

A plugin like the backends (``plugin.py``, registered in the ``whisper_runtime`` entry-point
group): the core finds it through the ``register_clusters`` hook and never imports Ray. Ray is
an optional extra (``pip install ".[ray]"``) and is imported only when ``--ray`` is used.

Modules: ``plugin`` (the hook; imports no Ray), ``connect`` (``ray.init`` or the running
instance), ``ray_job`` (the Ray Data job: one actor per worker holding one ``Runtime``),
``ray_serve`` (the server's app as a Ray Serve deployment, and its application builder).
"""
