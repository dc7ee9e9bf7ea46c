"""A deterministic generator of a FLAN-like multi-task instruction dataset (the embedded suites' data).

Fourteen templated tasks in five families (the coarse label, the analogue of Tulu's source). Each task
has several prompt templates, as FLAN does, and its own share of the training pool, so task sizes are
unequal. Everything is drawn from `random.Random(seed)`: the same arguments give the same examples on
every machine. Bump `bench.versions.GENERATOR` whenever the output for a given seed changes; it is part of every
cache key built on this data.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping

from bench.data import Example

_POSITIVE = ["wonderful", "great", "excellent", "delightful", "superb", "charming", "brilliant", "lovely",
             "fantastic", "pleasant", "moving", "clever"]
_NEGATIVE = ["terrible", "awful", "boring", "dreadful", "poor", "dull", "clumsy", "weak", "tedious",
             "horrible", "messy", "bland"]
_REVIEWED = ["movie", "book", "album", "restaurant", "show", "hotel", "game", "concert", "play", "novel"]
_TOPICS = {
    "sports": ["goal", "team", "match", "coach", "stadium", "player", "league", "referee"],
    "food": ["soup", "bread", "recipe", "kitchen", "cheese", "dessert", "chef", "salad"],
    "weather": ["rain", "storm", "cloud", "wind", "snow", "forecast", "sunshine", "thunder"],
    "music": ["guitar", "song", "drum", "melody", "choir", "piano", "singer", "rhythm"],
    "science": ["atom", "experiment", "laboratory", "molecule", "theory", "telescope", "cell", "energy"],
}
_ANTONYMS = [("hot", "cold"), ("big", "small"), ("fast", "slow"), ("happy", "sad"), ("light", "dark"),
             ("up", "down"), ("early", "late"), ("strong", "weak"), ("rich", "poor"), ("old", "young"),
             ("open", "closed"), ("full", "empty"), ("hard", "soft"), ("high", "low"), ("wet", "dry"),
             ("loud", "quiet"), ("near", "far"), ("thick", "thin"), ("clean", "dirty"), ("safe", "dangerous"),
             ("cheap", "expensive"), ("heavy", "light"), ("long", "short"), ("true", "false")]
_PLURALS = [("cat", "cats"), ("dog", "dogs"), ("mouse", "mice"), ("child", "children"), ("box", "boxes"),
            ("city", "cities"), ("knife", "knives"), ("tooth", "teeth"), ("foot", "feet"), ("man", "men"),
            ("woman", "women"), ("baby", "babies"), ("bus", "buses"), ("leaf", "leaves"), ("goose", "geese"),
            ("church", "churches"), ("wolf", "wolves"), ("party", "parties"), ("sheep", "sheep"),
            ("fish", "fish"), ("person", "people"), ("wish", "wishes"), ("story", "stories"),
            ("hero", "heroes")]
_CAPITALS = [("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
             ("Japan", "Tokyo"), ("Canada", "Ottawa"), ("Egypt", "Cairo"), ("Kenya", "Nairobi"),
             ("Peru", "Lima"), ("Chile", "Santiago"), ("Norway", "Oslo"), ("Sweden", "Stockholm"),
             ("Finland", "Helsinki"), ("Poland", "Warsaw"), ("Austria", "Vienna"), ("Greece", "Athens"),
             ("Portugal", "Lisbon"), ("Ireland", "Dublin"), ("Russia", "Moscow"), ("China", "Beijing"),
             ("India", "Delhi"), ("Thailand", "Bangkok"), ("Cuba", "Havana"), ("Mexico", "Mexico City"),
             ("Argentina", "Buenos Aires"), ("Australia", "Canberra"), ("Turkey", "Ankara"),
             ("Iran", "Tehran"), ("Morocco", "Rabat"), ("Hungary", "Budapest")]
_FRENCH = [("the cat", "le chat"), ("the dog", "le chien"), ("the house", "la maison"),
           ("the car", "la voiture"), ("the book", "le livre"), ("the water", "l eau"),
           ("the bread", "le pain"), ("the sun", "le soleil"), ("the moon", "la lune"),
           ("the tree", "l arbre"), ("the city", "la ville"), ("the apple", "la pomme"),
           ("the friend", "l ami"), ("the sea", "la mer"), ("the school", "l ecole"),
           ("the table", "la table"), ("the door", "la porte"), ("the window", "la fenetre"),
           ("the king", "le roi"), ("the garden", "le jardin"), ("good morning", "bonjour"),
           ("thank you", "merci"), ("the red flower", "la fleur rouge"), ("the big horse", "le grand cheval"),
           ("the small bird", "le petit oiseau"), ("the black cat", "le chat noir")]
_WORDS = ["apple", "river", "stone", "cloud", "tiger", "lemon", "garden", "window", "pencil", "mirror",
          "rocket", "violin", "candle", "forest", "island", "jacket", "ladder", "marble", "needle", "orange",
          "pepper", "rabbit", "silver", "tunnel", "valley", "wagon", "yellow", "zebra", "bridge", "carpet",
          "dragon", "engine", "flower", "guitar", "hammer", "kettle"]

Task = Callable[[random.Random], tuple[str, str]]


def _sentiment(rng: random.Random) -> tuple[str, str]:
    label = rng.choice(["positive", "negative"])
    words = _POSITIVE if label == "positive" else _NEGATIVE
    a, b = rng.sample(words, 2)
    review = f"the {rng.choice(_REVIEWED)} was {a} and {b}"
    template = rng.choice(["Is this review positive or negative? {r}", "Review: {r}. What is the sentiment?",
                           "Classify the sentiment of: {r}"])
    return template.format(r=review), label


def _topic(rng: random.Random) -> tuple[str, str]:
    topic = rng.choice(sorted(_TOPICS))
    a, b, c = rng.sample(_TOPICS[topic], 3)
    sentence = f"the {a} and the {b} near the {c}"
    template = rng.choice(["What is the topic of: {s}?", "Sentence: {s}. Topic?",
                           "Which subject does this belong to: {s}"])
    return template.format(s=sentence), topic


def _addition(rng: random.Random) -> tuple[str, str]:
    a, b = rng.randint(0, 99), rng.randint(0, 99)
    template = rng.choice(["What is {a} + {b}?", "Add {a} and {b}.", "Compute the sum of {a} and {b}."])
    return template.format(a=a, b=b), str(a + b)


def _comparison(rng: random.Random) -> tuple[str, str]:
    a, b = rng.sample(range(100), 2)
    template = rng.choice(["Which is larger: {a} or {b}?", "Pick the bigger number: {a} , {b}",
                           "Of {a} and {b}, which is greater?"])
    return template.format(a=a, b=b), str(max(a, b))


def _parity(rng: random.Random) -> tuple[str, str]:
    n = rng.randint(0, 999)
    template = rng.choice(["Is {n} even or odd?", "Parity of {n}?", "Tell me whether {n} is odd or even."])
    return template.format(n=n), "even" if n % 2 == 0 else "odd"


def _counting(rng: random.Random) -> tuple[str, str]:
    word = rng.choice(_WORDS)
    template = rng.choice(["How many letters are in the word {w}?", "Count the letters in {w}.",
                           "Number of letters in {w}?"])
    return template.format(w=word), str(len(word))


def _reversal(rng: random.Random) -> tuple[str, str]:
    words = rng.sample(_WORDS, rng.randint(3, 5))
    template = rng.choice(["Reverse the order of these words: {w}", "Write backwards: {w}",
                           "Reverse the list: {w}"])
    return template.format(w=" ".join(words)), " ".join(reversed(words))


def _sorting(rng: random.Random) -> tuple[str, str]:
    words = rng.sample(_WORDS, rng.randint(3, 5))
    template = rng.choice(["Sort these words alphabetically: {w}", "Put in alphabetical order: {w}",
                           "Alphabetize: {w}"])
    return template.format(w=" ".join(words)), " ".join(sorted(words))


def _uppercase(rng: random.Random) -> tuple[str, str]:
    words = rng.sample(_WORDS, rng.randint(2, 4))
    template = rng.choice(["Convert to uppercase: {w}", "Write in capital letters: {w}", "Uppercase this: {w}"])
    return template.format(w=" ".join(words)), " ".join(words).upper()


def _first_word(rng: random.Random) -> tuple[str, str]:
    words = rng.sample(_WORDS, rng.randint(3, 5))
    template = rng.choice(["What is the first word of: {w}?", "Return the first word: {w}",
                           "First word in the list {w}?"])
    return template.format(w=" ".join(words)), words[0]


def _pair_task(pairs: list[tuple[str, str]], templates: list[str], symmetric: bool = False) -> Task:
    def task(rng: random.Random) -> tuple[str, str]:
        x, y = rng.choice(pairs)
        if symmetric and rng.random() < 0.5:
            x, y = y, x
        return rng.choice(templates).format(x=x), y

    return task


_TASKS: dict[str, tuple[str, Task]] = {
    "sentiment": ("classification", _sentiment),
    "topic": ("classification", _topic),
    "addition": ("arithmetic", _addition),
    "comparison": ("arithmetic", _comparison),
    "parity": ("arithmetic", _parity),
    "counting": ("arithmetic", _counting),
    "reversal": ("manipulation", _reversal),
    "sorting": ("manipulation", _sorting),
    "uppercase": ("manipulation", _uppercase),
    "first_word": ("manipulation", _first_word),
    "antonym": ("lexical", _pair_task(_ANTONYMS, ["What is the opposite of {x}?", "Antonym of {x}:",
                                                  "Give a word meaning the opposite of {x}."], symmetric=True)),
    "plural": ("lexical", _pair_task(_PLURALS, ["What is the plural of {x}?", "Plural form of {x}:",
                                                "One {x}, two what?"])),
    "capital": ("knowledge", _pair_task(_CAPITALS, ["What is the capital of {x}?", "Capital city of {x}:",
                                                    "Name the capital of {x}."])),
    "translation": ("knowledge", _pair_task(_FRENCH, ["Translate to French: {x}", "In French, {x} is",
                                                      "French for {x}?"])),
}

# Relative share of each task in the pools that are meant to be unequal (train, warmup, airrep_train).
_SHARES = {"sentiment": 2.0, "topic": 1.5, "addition": 3.0, "comparison": 1.0, "parity": 0.7,
           "counting": 0.5, "reversal": 1.2, "sorting": 0.8, "uppercase": 0.6, "first_word": 0.3,
           "antonym": 1.0, "plural": 0.9, "capital": 1.3, "translation": 1.1}

TASK_NAMES = tuple(_TASKS)
FAMILIES: Mapping[str, str] = {name: family for name, (family, _) in _TASKS.items()}


def _counts(n: int, shares: Mapping[str, float]) -> dict[str, int]:
    """Split `n` into per-task counts proportional to `shares` (largest remainder), each at least 1."""
    total = sum(shares.values())
    raw = {t: n * s / total for t, s in shares.items()}
    counts = {t: max(1, int(v)) for t, v in raw.items()}
    by_remainder = sorted(shares, key=lambda t: (raw[t] - int(raw[t]), t), reverse=True)
    i = 0
    while sum(counts.values()) < n:
        counts[by_remainder[i % len(by_remainder)]] += 1
        i += 1
    while sum(counts.values()) > n:  # only when n < number of tasks
        largest = max(counts, key=lambda t: (counts[t], t))
        counts[largest] -= 1
    return counts


def generate(n: int, *, seed: int, split: str, balanced: bool = False,
             tasks: tuple[str, ...] = TASK_NAMES) -> list[Example]:
    """Generate `n` examples of the given tasks, shuffled, with ids `{split}-{i}`.

    Args:
        n: number of examples.
        seed: random seed; together with `split` it fixes the output.
        split: name used in the ids and mixed into the seed, so splits differ for one seed.
        balanced: equal task sizes (test sets) instead of the unequal pool shares.
        tasks: which tasks to draw from.
    """
    unknown = set(tasks) - set(_TASKS)
    if unknown:
        raise ValueError(f"unknown generator tasks: {sorted(unknown)}")
    rng = random.Random(f"{seed}/{split}")
    shares = {t: 1.0 if balanced else _SHARES[t] for t in tasks}
    counts = _counts(n, shares)
    rows = []
    for task in tasks:
        family, make = _TASKS[task]
        for _ in range(counts[task]):
            prompt, response = make(rng)
            rows.append((prompt, response, task, family))
    rng.shuffle(rows)
    return [Example(id=f"{split}-{i}", prompt=p, response=r, labels={"task": t, "family": f})
            for i, (p, r, t, f) in enumerate(rows)]
