"""Language codes: the languages we have training data for, and where the others fall back to."""

# The 10 languages with training data, knowledge base and system prompt (DESIGN.md).
TRAINING_LANGUAGES: tuple[str, ...] = ("en", "zh", "es", "fr", "de", "ar", "ru", "ja", "pt", "hi")

# The nearest training language for languages we have no data for, used to pick an adapter
# when none exists for the customer's own language. Chosen by family and shared vocabulary
# (Romance → es/pt/fr, Slavic → ru, Indo-Aryan → hi, Germanic → de); a language not listed
# falls back to the multilingual adapter or the base model, never to a guess.
NEAREST_TRAINING_LANGUAGE: dict[str, str] = {
    "it": "es", "ca": "es", "gl": "pt", "ro": "fr", "la": "es",
    "uk": "ru", "be": "ru", "bg": "ru", "mk": "ru", "sr": "ru", "kk": "ru", "mn": "ru",
    "pl": "ru", "cs": "ru", "sk": "ru", "sl": "ru", "hr": "ru", "bs": "ru",
    "nl": "de", "af": "de", "da": "de", "sv": "de", "nb": "de", "nn": "de", "is": "de", "lb": "de",
    "ur": "hi", "mr": "hi", "ne": "hi", "bn": "hi", "gu": "hi", "pa": "hi",
    "fa": "ar", "he": "ar", "so": "ar",
}


def language_name(code: str) -> str:
    """English name of an ISO 639-1 code ("es" → "Spanish"); the code itself if unknown."""
    from lingua import IsoCode639_1, Language

    try:
        language = Language.from_iso_code_639_1(IsoCode639_1.from_str(code))
    except ValueError:
        return code
    return language.name.title()
