"""A deterministic generator of a FLAN-like multi-task instruction dataset (the embedded suites' data).

Fourteen templated tasks in five families (the coarse label, the analogue of Tulu's source). Each task
has several prompt templates, as FLAN does, and its own share of the training pool, so task sizes are
unequal. Everything is drawn from `random.Random`, seeded by the suite's seed and the split: the same
arguments give the same examples on every machine. Bump `bench.versions.GENERATOR` whenever the output
for a given seed changes; it is part of every cache key built on this data.

The four splits are generated together and are disjoint by content, not only by prompt:

- every example has an *item*, what it asks about without its template: the country of a capital
  question, the pair of an antonym, the two numbers of a sum (in either order), the words of a list;
- closed-vocabulary tasks (capitals, translations, antonyms, plurals, and every task built from the
  word list) draw from a partition of their items: each split owns its countries, phrases, pairs and
  words (`ITEM_SHARES`), so a test item is never a training item;
- open tasks (sentiment, topic, arithmetic) draw freely, and an item drawn by one split is never drawn
  by another (the test split draws first);
- within a split no prompt appears twice. A task whose split has fewer distinct prompts than its share
  asks for gives up the rest to the split's other tasks (open tasks first), so every split keeps its size.

`bench.hygiene` checks the result by prompt; `generate_splits(..., with_items=True)` returns the items,
so that tests check disjointness by item too.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence

from bench.data import Example

_POSITIVE = ["wonderful", "great", "excellent", "delightful", "superb", "charming", "brilliant", "lovely",
             "fantastic", "pleasant", "moving", "clever", "beautiful", "gripping", "elegant", "joyful"]
_NEGATIVE = ["terrible", "awful", "boring", "dreadful", "poor", "dull", "clumsy", "weak", "tedious",
             "horrible", "messy", "bland", "ugly", "painful", "noisy", "lifeless"]
_REVIEWED = ["movie", "book", "album", "restaurant", "show", "hotel", "game", "concert", "play", "novel"]
_TOPICS = {
    "sports": ["goal", "team", "match", "coach", "stadium", "player", "league", "referee", "trophy", "tennis",
               "runner", "whistle", "season", "score"],
    "food": ["soup", "bread", "recipe", "kitchen", "cheese", "dessert", "chef", "salad", "oven", "butter",
             "spice", "noodle", "bakery", "sauce"],
    "weather": ["rain", "storm", "cloud", "wind", "snow", "forecast", "sunshine", "thunder", "fog", "hail",
                "breeze", "drizzle", "frost", "humidity"],
    "music": ["guitar", "song", "drum", "melody", "choir", "piano", "singer", "rhythm", "concerto", "chord",
              "band", "lyric", "tempo", "orchestra"],
    "science": ["atom", "experiment", "laboratory", "molecule", "theory", "telescope", "cell", "energy", "proton",
                "genome", "microscope", "reaction", "gravity", "fossil"],
}
_ANTONYMS = [("hot", "cold"), ("big", "small"), ("fast", "slow"), ("happy", "sad"), ("light", "dark"),
             ("up", "down"), ("early", "late"), ("strong", "weak"), ("rich", "poor"), ("old", "young"),
             ("open", "closed"), ("full", "empty"), ("hard", "soft"), ("high", "low"), ("wet", "dry"),
             ("loud", "quiet"), ("near", "far"), ("thick", "thin"), ("clean", "dirty"), ("safe", "dangerous"),
             ("cheap", "expensive"), ("long", "short"), ("true", "false"),
             ("wide", "narrow"), ("deep", "shallow"), ("sharp", "blunt"), ("smooth", "rough"),
             ("brave", "afraid"), ("polite", "rude"), ("sweet", "sour"), ("tight", "loose"),
             ("first", "last"), ("inside", "outside"), ("above", "below"), ("friend", "enemy")]
_PLURALS = [("cat", "cats"), ("dog", "dogs"), ("mouse", "mice"), ("child", "children"), ("box", "boxes"),
            ("city", "cities"), ("knife", "knives"), ("tooth", "teeth"), ("foot", "feet"), ("man", "men"),
            ("woman", "women"), ("baby", "babies"), ("bus", "buses"), ("leaf", "leaves"), ("goose", "geese"),
            ("church", "churches"), ("wolf", "wolves"), ("party", "parties"), ("sheep", "sheep"),
            ("fish", "fish"), ("person", "people"), ("wish", "wishes"), ("story", "stories"),
            ("hero", "heroes"), ("ox", "oxen"), ("cactus", "cacti"), ("life", "lives"), ("glass", "glasses"),
            ("fox", "foxes"), ("lady", "ladies"), ("potato", "potatoes"), ("deer", "deer"),
            ("half", "halves"), ("key", "keys"), ("bench", "benches"), ("shelf", "shelves")]
_CAPITALS = [("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
             ("Japan", "Tokyo"), ("Canada", "Ottawa"), ("Egypt", "Cairo"), ("Kenya", "Nairobi"),
             ("Peru", "Lima"), ("Chile", "Santiago"), ("Norway", "Oslo"), ("Sweden", "Stockholm"),
             ("Finland", "Helsinki"), ("Poland", "Warsaw"), ("Austria", "Vienna"), ("Greece", "Athens"),
             ("Portugal", "Lisbon"), ("Ireland", "Dublin"), ("Russia", "Moscow"), ("China", "Beijing"),
             ("India", "Delhi"), ("Thailand", "Bangkok"), ("Cuba", "Havana"), ("Mexico", "Mexico City"),
             ("Argentina", "Buenos Aires"), ("Australia", "Canberra"), ("Turkey", "Ankara"),
             ("Iran", "Tehran"), ("Morocco", "Rabat"), ("Hungary", "Budapest"), ("Denmark", "Copenhagen"),
             ("Belgium", "Brussels"), ("Colombia", "Bogota"), ("Vietnam", "Hanoi"), ("Nepal", "Kathmandu"),
             ("Ghana", "Accra"), ("Senegal", "Dakar"), ("Iceland", "Reykjavik"), ("Latvia", "Riga"),
             ("Romania", "Bucharest"), ("Serbia", "Belgrade"), ("Qatar", "Doha"), ("Jordan", "Amman"),
             ("Syria", "Damascus"), ("Iraq", "Baghdad"), ("Uganda", "Kampala"), ("Mali", "Bamako"),
             ("Bolivia", "Sucre")]
_FRENCH = [("the cat", "le chat"), ("the dog", "le chien"), ("the house", "la maison"),
           ("the car", "la voiture"), ("the book", "le livre"), ("the water", "l eau"),
           ("the bread", "le pain"), ("the sun", "le soleil"), ("the moon", "la lune"),
           ("the tree", "l arbre"), ("the city", "la ville"), ("the apple", "la pomme"),
           ("the friend", "l ami"), ("the sea", "la mer"), ("the school", "l ecole"),
           ("the table", "la table"), ("the door", "la porte"), ("the window", "la fenetre"),
           ("the king", "le roi"), ("the garden", "le jardin"), ("good morning", "bonjour"),
           ("thank you", "merci"), ("the red flower", "la fleur rouge"), ("the big horse", "le grand cheval"),
           ("the small bird", "le petit oiseau"), ("the black cat", "le chat noir"),
           ("the bed", "le lit"), ("the road", "la route"), ("the river", "la riviere"),
           ("the milk", "le lait"), ("the cheese", "le fromage"), ("the night", "la nuit"),
           ("the day", "le jour"), ("the boy", "le garcon"), ("the girl", "la fille"),
           ("the chair", "la chaise"), ("the train", "le train"), ("the green tree", "l arbre vert"),
           ("good night", "bonne nuit"), ("the white horse", "le cheval blanc")]
_WORDS = ["apple", "river", "stone", "cloud", "tiger", "lemon", "garden", "window", "pencil", "mirror",
          "rocket", "violin", "candle", "forest", "island", "jacket", "ladder", "marble", "needle", "orange",
          "pepper", "rabbit", "silver", "tunnel", "valley", "wagon", "yellow", "zebra", "bridge", "carpet",
          "dragon", "engine", "flower", "guitar", "hammer", "kettle", "anchor", "basket", "button", "castle",
          "cookie", "desert", "feather", "glove", "helmet", "insect", "jungle", "lantern", "magnet", "napkin",
          "planet", "saddle", "tomato", "wallet"]

Item = object  # hashable: what an example asks about, without its template
Maker = Callable[[random.Random, Sequence], tuple[str, str, Item]]


def _sentiment(rng: random.Random, _items: Sequence) -> tuple[str, str, Item]:
    label = rng.choice(["positive", "negative"])
    words = _POSITIVE if label == "positive" else _NEGATIVE
    a, b = rng.sample(words, 2)
    noun = rng.choice(_REVIEWED)
    template = rng.choice(["Is this review positive or negative? {r}", "Review: {r}. What is the sentiment?",
                           "Classify the sentiment of: {r}"])
    return template.format(r=f"the {noun} was {a} and {b}"), label, (noun, frozenset((a, b)))


def _topic(rng: random.Random, _items: Sequence) -> tuple[str, str, Item]:
    topic = rng.choice(sorted(_TOPICS))
    a, b, c = rng.sample(_TOPICS[topic], 3)
    template = rng.choice(["What is the topic of: {s}?", "Sentence: {s}. Topic?",
                           "Which subject does this belong to: {s}"])
    return template.format(s=f"the {a} and the {b} near the {c}"), topic, frozenset((a, b, c))


def _addition(rng: random.Random, _items: Sequence) -> tuple[str, str, Item]:
    a, b = rng.randint(0, 99), rng.randint(0, 99)
    template = rng.choice(["What is {a} + {b}?", "Add {a} and {b}.", "Compute the sum of {a} and {b}."])
    return template.format(a=a, b=b), str(a + b), tuple(sorted((a, b)))


def _comparison(rng: random.Random, _items: Sequence) -> tuple[str, str, Item]:
    a, b = rng.sample(range(100), 2)
    template = rng.choice(["Which is larger: {a} or {b}?", "Pick the bigger number: {a} , {b}",
                           "Of {a} and {b}, which is greater?"])
    return template.format(a=a, b=b), str(max(a, b)), tuple(sorted((a, b)))


def _parity(rng: random.Random, _items: Sequence) -> tuple[str, str, Item]:
    n = rng.randint(0, 999)
    template = rng.choice(["Is {n} even or odd?", "Parity of {n}?", "Tell me whether {n} is odd or even."])
    return template.format(n=n), "even" if n % 2 == 0 else "odd", n


def _counting(rng: random.Random, words: Sequence) -> tuple[str, str, Item]:
    word = rng.choice(words)
    template = rng.choice(["How many letters are in the word {w}?", "Count the letters in {w}.",
                           "Number of letters in {w}?"])
    return template.format(w=word), str(len(word)), word


def _word_list(templates: list[str], answer: Callable[[list[str]], str], lo: int, hi: int) -> Maker:
    def task(rng: random.Random, words: Sequence) -> tuple[str, str, Item]:
        chosen = rng.sample(list(words), rng.randint(lo, min(hi, len(words))))
        return rng.choice(templates).format(w=" ".join(chosen)), answer(chosen), tuple(chosen)

    return task


def _pair_task(templates: list[str], symmetric: bool = False) -> Maker:
    def task(rng: random.Random, pairs: Sequence) -> tuple[str, str, Item]:
        x, y = rng.choice(pairs)
        item = frozenset((x, y)) if symmetric else x
        if symmetric and rng.random() < 0.5:
            x, y = y, x
        return rng.choice(templates).format(x=x), y, item

    return task


# name -> (family, maker, closed items or None). Tasks built on one list share its partition.
_TASKS: dict[str, tuple[str, Maker, str | None]] = {
    "sentiment": ("classification", _sentiment, None),
    "topic": ("classification", _topic, None),
    "addition": ("arithmetic", _addition, None),
    "comparison": ("arithmetic", _comparison, None),
    "parity": ("arithmetic", _parity, None),
    "counting": ("arithmetic", _counting, "words"),
    "reversal": ("manipulation", _word_list(["Reverse the order of these words: {w}", "Write backwards: {w}",
                                             "Reverse the list: {w}"], lambda w: " ".join(reversed(w)), 3, 5),
                 "words"),
    "sorting": ("manipulation", _word_list(["Sort these words alphabetically: {w}", "Put in alphabetical order: {w}",
                                            "Alphabetize: {w}"], lambda w: " ".join(sorted(w)), 3, 5), "words"),
    "uppercase": ("manipulation", _word_list(["Convert to uppercase: {w}", "Write in capital letters: {w}",
                                              "Uppercase this: {w}"], lambda w: " ".join(w).upper(), 2, 4),
                  "words"),
    "first_word": ("manipulation", _word_list(["What is the first word of: {w}?", "Return the first word: {w}",
                                               "First word in the list {w}?"], lambda w: w[0], 3, 5), "words"),
    "antonym": ("lexical", _pair_task(["What is the opposite of {x}?", "Antonym of {x}:",
                                       "Give a word meaning the opposite of {x}."], symmetric=True), "antonyms"),
    "plural": ("lexical", _pair_task(["What is the plural of {x}?", "Plural form of {x}:",
                                      "One {x}, two what?"]), "plurals"),
    "capital": ("knowledge", _pair_task(["What is the capital of {x}?", "Capital city of {x}:",
                                         "Name the capital of {x}."]), "capitals"),
    "translation": ("knowledge", _pair_task(["Translate to French: {x}", "In French, {x} is", "French for {x}?"]),
                    "french"),
}
_ITEMS: dict[str, list] = {"words": _WORDS, "antonyms": _ANTONYMS, "plurals": _PLURALS, "capitals": _CAPITALS,
                           "french": _FRENCH}

# Relative share of each task in the pools that are meant to be unequal (train, warmup, airrep_train).
_SHARES = {"sentiment": 2.0, "topic": 1.5, "addition": 3.0, "comparison": 1.0, "parity": 0.7,
           "counting": 0.5, "reversal": 1.2, "sorting": 0.8, "uppercase": 0.6, "first_word": 0.3,
           "antonym": 1.0, "plural": 0.9, "capital": 1.3, "translation": 1.1}

TASK_NAMES = tuple(_TASKS)
FAMILIES: Mapping[str, str] = {name: family for name, (family, _, _) in _TASKS.items()}
SPLIT_ORDER = ("test", "train", "warmup", "airrep_train")  # the test split draws first
# drawn after those, from open-item tasks only (no share of the closed item lists, so a suite without it keeps
# exactly the splits it had): the corpus a built base LM is pretrained on (`lm.base_steps`)
PRETRAIN_SPLIT = "pretrain"
OPEN_TASKS = tuple(t for t, (_, _, items) in _TASKS.items() if items is None)
# each split's share of every closed item list (its own countries, pairs, words)
ITEM_SHARES = {"test": 0.25, "train": 0.35, "warmup": 0.2, "airrep_train": 0.2}
_TRIES_PER_EXAMPLE = 60  # draws before a task's split is taken to have no distinct prompt left


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


def partition(items: Sequence, seed: int) -> dict[str, list]:
    """Each split's own share of a closed item list (`ITEM_SHARES`), by a seeded shuffle."""
    order = list(items)
    random.Random(f"{seed}/items/{len(order)}/{order[0]!r}").shuffle(order)
    out, start = {}, 0
    for k, split in enumerate(SPLIT_ORDER):
        end = len(order) if k == len(SPLIT_ORDER) - 1 else start + max(2, round(ITEM_SHARES[split] * len(order)))
        out[split] = order[start:end]
        start = end
    return out


def generate_splits(sizes: Mapping[str, int], *, seed: int, tasks: Mapping[str, Sequence[str]],
                    with_items: bool = False):
    """Generate the four splits together, disjoint by item, without duplicate prompts within a split.

    A fifth, `pretrain`, is drawn last when its size is not 0, from open-item tasks only (items no other
    split drew; the closed item lists are partitioned between the four).

    Args:
        sizes: examples per split (`train`, `test`, `warmup`, `airrep_train`, optionally `pretrain`).
        seed: the random seed; with the split name it fixes each split's draws.
        tasks: the generator tasks each split draws from.
        with_items: also return each example's item.

    Returns:
        split -> examples with ids `{split}-{i}` (test balanced over its tasks, the others at the unequal
        pool shares); with `with_items`, split -> (examples, items).
    """
    unknown = {t for ts in tasks.values() for t in ts} - set(_TASKS)
    if unknown:
        raise ValueError(f"unknown generator tasks: {sorted(unknown)}")
    closed = sorted(t for t in tasks.get(PRETRAIN_SPLIT, ()) if t not in OPEN_TASKS)
    if closed and sizes.get(PRETRAIN_SPLIT, 0):
        raise ValueError(f"the {PRETRAIN_SPLIT} split draws from open-item tasks only ({', '.join(OPEN_TASKS)}); "
                         f"not {', '.join(closed)}")
    parts = {name: partition(items, seed) for name, items in _ITEMS.items()}
    taken: set[tuple[str, Item]] = set()  # (task, item) drawn by an earlier split
    out: dict = {}
    order = SPLIT_ORDER + ((PRETRAIN_SPLIT,) if sizes.get(PRETRAIN_SPLIT, 0) else ())
    for split in order:
        n, names = sizes.get(split, 0), tuple(tasks[split])
        rng = random.Random(f"{seed}/{split}")
        counts = _counts(n, {t: 1.0 if split == "test" else _SHARES[t] for t in names}) if n else {}
        rows: list[tuple[str, str, str, Item]] = []
        prompts: set[str] = set()
        mine: set[tuple[str, Item]] = set()
        spare = 0  # examples that tasks without distinct prompts left gave up
        for task in names:
            spare += counts[task] - _draw(task, counts[task], split, parts, rng, taken, prompts, mine, rows)
        # the tasks with prompts left take up the rest, round-robin, open tasks first
        takers = sorted(names, key=lambda t: _TASKS[t][2] is not None)
        while spare and takers:
            for task in list(takers):
                want = min(spare, max(1, spare // len(takers)))
                got = _draw(task, want, split, parts, rng, taken, prompts, mine, rows)
                spare -= got
                if got < want:
                    takers.remove(task)
                if not spare:
                    break
        if spare:
            raise ValueError(f"generator: split {split} cannot hold {n} distinct examples of {list(names)}")
        taken |= mine
        rng.shuffle(rows)
        examples = [Example(id=f"{split}-{i}", prompt=p, response=r, labels={"task": t, "family": FAMILIES[t]})
                    for i, (p, r, t, _) in enumerate(rows)]
        out[split] = (examples, [item for *_, item in rows]) if with_items else examples
    return out


def _draw(task: str, count: int, split: str, parts: Mapping[str, Mapping[str, list]], rng: random.Random,
          taken: set, prompts: set[str], mine: set, rows: list) -> int:
    """Append up to `count` new examples of `task` to `rows`; return how many it found."""
    _, make, items_name = _TASKS[task]
    items = parts[items_name][split] if items_name else ()
    found = 0
    for _ in range(_TRIES_PER_EXAMPLE * count):
        if found == count:
            break
        prompt, response, item = make(rng, items)
        if prompt in prompts or (task, item) in taken:
            continue
        prompts.add(prompt)
        mine.add((task, item))
        rows.append((prompt, response, task, item))
        found += 1
    return found
