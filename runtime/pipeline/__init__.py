"""From audio to segments: options, sources, the scheduler, the runner, the engine."""
