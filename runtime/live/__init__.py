"""Live transcription: audio that arrives while it is spoken, cut into turns and transcribed by
the same ``Engine`` that transcribes files.

    audio pieces ──Silero (state carried)──> turns (``turns.TurnDetector``: speech started,
      paused, resumed, stopped; a turn past ``max_turn_s`` is cut at its least likely frame)
      └─ a partial re-decode of the growing turn at most every ``partial_interval_ms`` of new
         speech, as a PARTIAL-priority input; the words two partials agree on are stable
         (``agreement.LocalAgreement``) and go out as deltas
      └─ the final decode of a turn starts ``final_tail_ms`` into the silence that may end it,
         as a LIVE-priority input, and is kept when the silence lasts ``silence_duration_ms``
      └─ finals in turn order, each prompted with the text of the turns before it

``session.LiveSession`` is driven by one thread (the server's event loop, the CLI's loop) and
speaks in protocol-free events (``events``); ``runtime.server.realtime`` turns them into
OpenAI's Realtime events, ``runtime transcribe --live`` into lines.
"""

from runtime.live.events import LiveError
from runtime.live.options import LiveOptions, TurnDetection
from runtime.live.session import LiveSession, PartialBudget

__all__ = ["LiveError", "LiveOptions", "LiveSession", "PartialBudget", "TurnDetection"]
