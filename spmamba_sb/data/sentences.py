"""Varied English sentences from a small grammar, for the demo corpus's synthetic speakers."""

from typing import Dict, List, Tuple

import numpy as np

_WORDS: Dict[str, Tuple[str, ...]] = {
    "name": ("Anna", "Boris", "Clara", "Daniel", "Elena", "Felix", "Grace", "Hugo", "Irene", "Jonas", "Keira",
             "Leo", "Maya", "Nathan", "Olga", "Peter", "Quinn", "Rosa", "Samuel", "Tara", "Umar", "Vera",
             "Walter", "Yasmin", "Zoe", "the captain", "the old doctor", "my neighbour", "her brother",
             "the young teacher", "our guide", "the baker"),
    "noun": ("river", "garden", "letter", "window", "bicycle", "mountain", "kitchen", "village", "lantern",
             "harbour", "notebook", "forest", "bridge", "market", "piano", "basket", "station", "candle",
             "meadow", "library", "ladder", "engine", "blanket", "compass", "orchard", "island", "clock",
             "violin", "carpet", "tower", "fountain", "wagon", "jacket", "kettle", "painting", "ship"),
    "adjective": ("quiet", "golden", "narrow", "ancient", "bright", "heavy", "gentle", "crowded", "distant",
                  "broken", "silver", "tiny", "enormous", "muddy", "warm", "frozen", "curious", "empty",
                  "hidden", "wooden", "patient", "noisy", "careful", "strange", "famous", "little"),
    "verb_past": ("found", "painted", "carried", "repaired", "noticed", "opened", "followed", "described",
                  "cleaned", "borrowed", "watched", "visited", "remembered", "crossed", "measured", "counted",
                  "sold", "built", "lost", "moved", "explained", "discovered", "wrapped", "planted"),
    "verb_base": ("find", "paint", "carry", "repair", "open", "follow", "clean", "borrow", "visit", "cross",
                  "measure", "sell", "build", "move", "explain", "wrap", "plant", "check", "leave", "bring"),
    "adverb": ("slowly", "quickly", "carefully", "early", "late", "suddenly", "quietly", "happily",
               "again", "yesterday", "this morning", "after dinner", "before sunrise", "at noon"),
    "preposition": ("near", "behind", "beside", "under", "across", "inside", "above", "along", "past",
                    "around", "towards", "beyond"),
    "place": ("the station", "the old mill", "the harbour", "the town square", "the hill", "the school",
              "the farm", "the museum", "the lake", "the bakery", "the castle", "the valley"),
    "time": ("on Monday", "in the spring", "every evening", "last winter", "at midnight", "next week",
             "in nineteen ninety", "on a rainy day", "during the storm", "after the concert"),
    "feeling": ("glad", "surprised", "tired", "certain", "worried", "proud", "curious", "sorry"),
    "number": ("two", "three", "four", "five", "seven", "nine", "eleven", "twelve", "twenty", "forty",
               "a hundred", "a few", "several", "many"),
}

_TEMPLATES = (
    "{name} {verb_past} the {adjective} {noun} {preposition} {place}.",
    "{name} {verb_past} {number} {nouns} {adverb}.",
    "The {noun} {preposition} the {noun} was {adjective} {time}.",
    "Did {name} {verb_base} the {noun} {time}?",
    "We {verb_past} {a_adjective} {noun} and then walked to {place}.",
    "{name} was {feeling} that the {noun} looked so {adjective}.",
    "Please {verb_base} the {adjective} {noun} before {name} arrives.",
    "{time_capital}, {name} {verb_past} the {noun} {preposition} {place}.",
    "There were {number} {adjective} {nouns} {preposition} {place}.",
    "Why did {name} {verb_base} the {noun} {adverb}?",
    "I think the {adjective} {noun} is still {preposition} {place}.",
    "{name} said the {noun} had been {verb_past} {time}.",
    "After {name} {verb_past} the {noun}, everyone felt {feeling}.",
    "Nobody {verb_past} the {adjective} {noun} {adverb}.",
    "If you {verb_base} the {noun}, {name} will be {feeling}.",
    "The {adjective} {noun} and the {adjective} {noun} stood {preposition} {place}.",
)


def _plural(noun: str) -> str:
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


class SentenceGenerator:
    """Random English sentences: templates filled with random words, one to ``max_sentences`` per utterance.

    Arguments
    ---------
    max_sentences : int
        Most sentences in one utterance.

    Example
    -------
    >>> generator = SentenceGenerator()
    >>> text = generator.utterance(np.random.default_rng(0))
    >>> text == generator.utterance(np.random.default_rng(0)) and text.endswith(("." , "?"))
    True
    """

    def __init__(self, max_sentences: int = 2):
        if not (isinstance(max_sentences, int) and max_sentences >= 1):
            raise ValueError(f"max_sentences={max_sentences!r} must be a positive integer")
        self.max_sentences = max_sentences

    @staticmethod
    def _pick(rng: np.random.Generator, category: str) -> str:
        words = _WORDS[category]
        return words[int(rng.integers(len(words)))]

    def sentence(self, rng: np.random.Generator) -> str:
        """One sentence.

        Arguments
        ---------
        rng : np.random.Generator
            Source of the choices.

        Returns
        -------
        str
            A sentence starting with a capital letter.
        """
        template = _TEMPLATES[int(rng.integers(len(_TEMPLATES)))]
        pieces: List[str] = []
        rest = template
        while "{" in rest:
            before, _, after = rest.partition("{")
            field, _, rest = after.partition("}")
            pieces.append(before)
            if field == "time_capital":
                word = self._pick(rng, "time")
                pieces.append(word[0].upper() + word[1:])
            elif field == "nouns":
                pieces.append(_plural(self._pick(rng, "noun")))
            elif field == "a_adjective":
                word = self._pick(rng, "adjective")
                pieces.append(("an " if word[0] in "aeiou" else "a ") + word)
            else:
                pieces.append(self._pick(rng, field))
        pieces.append(rest)
        text = "".join(pieces)
        return text[0].upper() + text[1:]

    def utterance(self, rng: np.random.Generator) -> str:
        """One to ``max_sentences`` sentences joined by spaces.

        Arguments
        ---------
        rng : np.random.Generator
            Source of the choices.

        Returns
        -------
        str
            The text.
        """
        count = int(rng.integers(1, self.max_sentences + 1))
        return " ".join(self.sentence(rng) for _ in range(count))
