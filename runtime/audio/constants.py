"""Whisper's audio and time constants, each derived from the one before it. No imports, so any
module (the log-mel, ONNX graph export, the decoding loop) can use them without pulling in an
audio decoder."""

SAMPLE_RATE = 16000  # Hz: what every Whisper model was trained on
N_FFT = 400  # 25 ms analysis window at 16 kHz
HOP_LENGTH = 160  # 10 ms between frames
CHUNK_LENGTH = 30  # seconds of audio the encoder sees at once
N_SAMPLES = CHUNK_LENGTH * SAMPLE_RATE  # 480000 samples in a 30 s window
N_FRAMES = N_SAMPLES // HOP_LENGTH  # 3000 frames in a 30 s window
FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH  # 100 frames (10 ms each) per second
INPUT_STRIDE = 2  # mel frames per encoder output frame (the second conv has stride 2)
N_AUDIO_CTX = N_FRAMES // INPUT_STRIDE  # 1500 encoder positions per 30 s window
N_SAMPLES_PER_TOKEN = HOP_LENGTH * INPUT_STRIDE  # 320 samples per encoder position
TOKENS_PER_SECOND = SAMPLE_RATE // N_SAMPLES_PER_TOKEN  # 50 audio positions (20 ms each) per second
TIME_PRECISION = INPUT_STRIDE / FRAMES_PER_SECOND  # 0.02 s per timestamp token
