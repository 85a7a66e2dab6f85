from __future__ import annotations

import pytest

from runtime.model.tokenizer import LANGUAGES, load_tokenizer, normalize_language


def test_english_only_special_tokens(tiny_tokenizer):
    sp = tiny_tokenizer.special
    assert (sp.eot, sp.sot, sp.no_speech, sp.no_timestamps) == (50256, 50257, 50361, 50362)
    assert sp.timestamp_begin == 50363
    assert tiny_tokenizer.sot_sequence(None) == (50257,)
    assert tiny_tokenizer.all_language_tokens == ()


def test_multilingual_special_tokens(base_model):
    tok = load_tokenizer(base_model.tokenizer_path, True, base_model.dims.num_languages)
    sp = tok.special
    assert (sp.sot, sp.translate, sp.transcribe, sp.no_timestamps) == (50258, 50358, 50359, 50363)
    assert tok.language_token("en") == 50259
    assert tok.language_token("de") == 50261
    assert tok.sot_sequence("de", "translate") == (50258, 50261, 50358)
    assert len(tok.all_language_tokens) == 99
    with pytest.raises(ValueError, match="not supported"):
        tok.language_token("yue")  # large-v3 only


def test_text_round_trip_and_specials_dropped(tiny_tokenizer):
    ids = tiny_tokenizer.encode(" ask not what your country can do for you")
    assert tiny_tokenizer.decode(ids) == " ask not what your country can do for you"
    ts = tiny_tokenizer.special.timestamp_begin
    assert (
        tiny_tokenizer.decode([tiny_tokenizer.special.sot, ts, *ids, ts + 50])
        == " ask not what your country can do for you"
    )


def test_non_speech_tokens_cover_symbols(tiny_tokenizer):
    banned = set(tiny_tokenizer.non_speech_tokens)
    for symbol in ("(", " [", " -", '"'):
        assert tiny_tokenizer.encode(symbol)[0] in banned
    assert tiny_tokenizer.encode(" the")[0] not in banned


def test_language_names_and_codes():
    assert len(LANGUAGES) == 100
    assert normalize_language("German") == "de"
    assert normalize_language("EN") == "en"
    assert normalize_language(None) is None
    with pytest.raises(ValueError, match="unknown language"):
        normalize_language("klingon")


def test_bad_tokenizer_file(tmp_path):
    from runtime.errors import ModelFormatError

    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json")
    with pytest.raises(ModelFormatError, match="tokenizer.json"):
        load_tokenizer(bad, False)
