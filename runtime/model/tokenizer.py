"""Whisper's tokenizer: the model folder's BPE (``tokenizer.json``) plus Whisper's special tokens.

The special-token ids are looked up in the vocabulary, not hard-coded, because English-only and
multilingual vocabularies place them differently (``<|endoftext|>`` is 50256 in both, but
``<|startoftranscript|>`` is 50257 vs 50258). Timestamp tokens follow ``<|notimestamps|>``
directly and are usually absent from ``tokenizer.json``, so their ids are computed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

from tokenizers import Tokenizer as _BPE

from runtime.errors import ModelFormatError

# Whisper's language codes in vocabulary order (token id = <|startoftranscript|> + 1 + index).
LANGUAGES: dict[str, str] = dict(
    pair.split(":")
    for pair in [
        "en:english",
        "zh:chinese",
        "de:german",
        "es:spanish",
        "ru:russian",
        "ko:korean",
        "fr:french",
        "ja:japanese",
        "pt:portuguese",
        "tr:turkish",
        "pl:polish",
        "ca:catalan",
        "nl:dutch",
        "ar:arabic",
        "sv:swedish",
        "it:italian",
        "id:indonesian",
        "hi:hindi",
        "fi:finnish",
        "vi:vietnamese",
        "he:hebrew",
        "uk:ukrainian",
        "el:greek",
        "ms:malay",
        "cs:czech",
        "ro:romanian",
        "da:danish",
        "hu:hungarian",
        "ta:tamil",
        "no:norwegian",
        "th:thai",
        "ur:urdu",
        "hr:croatian",
        "bg:bulgarian",
        "lt:lithuanian",
        "la:latin",
        "mi:maori",
        "ml:malayalam",
        "cy:welsh",
        "sk:slovak",
        "te:telugu",
        "fa:persian",
        "lv:latvian",
        "bn:bengali",
        "sr:serbian",
        "az:azerbaijani",
        "sl:slovenian",
        "kn:kannada",
        "et:estonian",
        "mk:macedonian",
        "br:breton",
        "eu:basque",
        "is:icelandic",
        "hy:armenian",
        "ne:nepali",
        "mn:mongolian",
        "bs:bosnian",
        "kk:kazakh",
        "sq:albanian",
        "sw:swahili",
        "gl:galician",
        "mr:marathi",
        "pa:punjabi",
        "si:sinhala",
        "km:khmer",
        "sn:shona",
        "yo:yoruba",
        "so:somali",
        "af:afrikaans",
        "oc:occitan",
        "ka:georgian",
        "be:belarusian",
        "tg:tajik",
        "sd:sindhi",
        "gu:gujarati",
        "am:amharic",
        "yi:yiddish",
        "lo:lao",
        "uz:uzbek",
        "fo:faroese",
        "ht:haitian_creole",
        "ps:pashto",
        "tk:turkmen",
        "nn:nynorsk",
        "mt:maltese",
        "sa:sanskrit",
        "lb:luxembourgish",
        "my:myanmar",
        "bo:tibetan",
        "tl:tagalog",
        "mg:malagasy",
        "as:assamese",
        "tt:tatar",
        "haw:hawaiian",
        "ln:lingala",
        "ha:hausa",
        "ba:bashkir",
        "jw:javanese",
        "su:sundanese",
        "yue:cantonese",
    ]
)
LANGUAGES = {code: name.replace("_", " ") for code, name in LANGUAGES.items()}
LANGUAGE_CODES_BY_NAME: dict[str, str] = {name: code for code, name in LANGUAGES.items()}


def normalize_language(value: str | None) -> str | None:
    """Accept a code ('de') or an English name ('German'); return the code, or raise ValueError."""
    if value is None:
        return None
    key = value.strip().lower()
    if key in LANGUAGES:
        return key
    if key in LANGUAGE_CODES_BY_NAME:
        return LANGUAGE_CODES_BY_NAME[key]
    raise ValueError(f"unknown language {value!r}; use a code such as 'en' or 'de' or a name")


@dataclass(frozen=True)
class SpecialTokens:
    eot: int
    sot: int
    translate: int
    transcribe: int
    sot_lm: int
    sot_prev: int
    no_speech: int
    no_timestamps: int

    @property
    def timestamp_begin(self) -> int:
        # <|0.00|> comes right after <|notimestamps|>; steps of 0.02 s up to <|30.00|>.
        return self.no_timestamps + 1


class Tokenizer:
    """Text <-> token ids, the start-of-transcript sequence and the suppress lists."""

    def __init__(self, path: Path, multilingual: bool, num_languages: int = 99) -> None:
        try:
            self._bpe = _BPE.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception subclass
            raise ModelFormatError(f"{path}: not a readable tokenizer.json ({exc})") from exc
        self.path = path
        self.multilingual = multilingual
        self.num_languages = num_languages
        self.special = self._find_special_tokens()

    def _id(self, token: str) -> int | None:
        return self._bpe.token_to_id(token)

    def _find_special_tokens(self) -> SpecialTokens:
        ids = {
            name: self._id(f"<|{name}|>")
            for name in (
                "endoftext",
                "startoftranscript",
                "translate",
                "transcribe",
                "startoflm",
                "startofprev",
                "nospeech",
                "nocaptions",
                "notimestamps",
            )
        }
        no_speech = ids["nospeech"] if ids["nospeech"] is not None else ids["nocaptions"]
        missing = [k for k, v in ids.items() if v is None and k not in ("nospeech", "nocaptions")]
        if missing or no_speech is None:
            raise ModelFormatError(f"{self.path}: not a Whisper tokenizer (missing {missing})")
        found = {name: i for name, i in ids.items() if i is not None}  # all but no_speech's
        return SpecialTokens(
            eot=found["endoftext"],
            sot=found["startoftranscript"],
            translate=found["translate"],
            transcribe=found["transcribe"],
            sot_lm=found["startoflm"],
            sot_prev=found["startofprev"],
            no_speech=no_speech,
            no_timestamps=found["notimestamps"],
        )

    # -- text ---------------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        return self._bpe.encode(text, add_special_tokens=False).ids

    def decode(self, tokens: list[int]) -> str:
        """Text of the ordinary tokens; special and timestamp tokens are dropped."""
        return self._bpe.decode([t for t in tokens if t < self.special.eot])

    # -- prompts ------------------------------------------------------------------------------
    def language_token(self, code: str) -> int:
        if not self.multilingual:
            raise ValueError("an English-only model has no language tokens")
        codes = list(LANGUAGES)[: self.num_languages]
        if code not in codes:
            raise ValueError(f"language {code!r} is not supported by this model")
        return self.special.sot + 1 + codes.index(code)

    @cached_property
    def all_language_tokens(self) -> tuple[int, ...]:
        if not self.multilingual:
            return ()
        return tuple(self.special.sot + 1 + i for i in range(self.num_languages))

    @cached_property
    def all_language_codes(self) -> tuple[str, ...]:
        return tuple(list(LANGUAGES)[: self.num_languages]) if self.multilingual else ()

    def sot_sequence(self, language: str | None, task: str = "transcribe") -> tuple[int, ...]:
        """<|startoftranscript|> [<|lang|> <|task|>] as Whisper expects for this vocabulary."""
        seq = [self.special.sot]
        if self.multilingual:
            seq.append(self.language_token(language or "en"))
            seq.append(self.special.translate if task == "translate" else self.special.transcribe)
        return tuple(seq)

    # -- suppression --------------------------------------------------------------------------
    @cached_property
    def non_speech_tokens(self) -> tuple[int, ...]:
        """Tokens of symbols that are never speech (openai-whisper's list), to be banned."""
        symbols = list('"#()*+/:;<=>@[\\]^_`{|}~「」『』')
        symbols += [
            "<<",
            ">>",
            "<<<",
            ">>>",
            "--",
            "---",
            "-(",
            "-[",
            "('",
            '("',
            "((",
            "))",
            "(((",
            ")))",
            "[[",
            "]]",
            "{{",
            "}}",
            "♪♪",
            "♪♪♪",
        ]
        miscellaneous = set("♩♪♫♬♭♮♯")
        result = {self.encode(" -")[0], self.encode(" '")[0]}
        for symbol in symbols + list(miscellaneous):
            for tokens in (self.encode(symbol), self.encode(" " + symbol)):
                if len(tokens) == 1 or symbol in miscellaneous:
                    result.add(tokens[0])
        return tuple(sorted(result))


@lru_cache(maxsize=8)
def load_tokenizer(path: Path, multilingual: bool, num_languages: int = 99) -> Tokenizer:
    return Tokenizer(path, multilingual, num_languages)
