"""Decoding: options, logit filters, token strategies and the loop shared by every backend."""

from runtime.decoding.decode import decode, detect_language
from runtime.decoding.options import DecodingOptions, DecodingResult, compression_ratio

__all__ = ["decode", "detect_language", "DecodingOptions", "DecodingResult", "compression_ratio"]
