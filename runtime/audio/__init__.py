"""Audio in: decoding files to 16 kHz mono, the log-mel, voice activity, chunks."""
