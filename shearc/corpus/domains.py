"""Six text domains with different structure and entropy, each a pure function of a seeded RNG.

Arithmetic and sorting are algorithmic (the answer is determined, so their loss falls only as the
model learns to compute), JSON records and log lines are templated with random fields, code-like
programs follow a small grammar, and prose is sampled from a context-free grammar with a larger
vocabulary (the highest entropy). Pruning should hurt them unevenly.
"""

from __future__ import annotations

import random
from collections.abc import Callable

NAMES = ["ada", "alan", "grace", "edsger", "barbara", "donald", "ken", "dennis", "margaret", "john",
         "frances", "tony", "leslie", "niklaus", "radia", "shafi"]
CITIES = ["paris", "lagos", "lima", "oslo", "delhi", "tokyo", "cairo", "quito", "perth", "seoul"]
TAGS = ["red", "green", "blue", "fast", "slow", "new", "old", "beta", "prod", "test"]
SERVICES = ["api", "auth", "db", "cache", "queue", "web", "search", "billing"]
PATHS = ["/users", "/orders", "/login", "/items", "/health", "/search", "/cart", "/admin"]
LEVELS = [("INFO", 0.7), ("DEBUG", 0.15), ("WARN", 0.1), ("ERROR", 0.05)]

NOUNS = ["cat", "river", "teacher", "machine", "garden", "city", "engine", "child", "storm", "book",
         "farmer", "bridge", "signal", "forest", "window", "doctor", "planet", "letter", "market", "song"]
VERBS = ["sees", "builds", "follows", "paints", "finds", "moves", "hears", "opens", "carries", "watches",
         "breaks", "lifts", "counts", "draws", "keeps"]
ADJECTIVES = ["small", "quiet", "bright", "old", "heavy", "green", "strange", "careful", "distant", "warm",
              "broken", "tall"]
ADVERBS = ["slowly", "quickly", "often", "never", "quietly", "again", "carefully"]
PREPOSITIONS = ["near", "under", "behind", "beside", "across", "inside"]
CONJUNCTIONS = ["and", "but", "because", "while"]


def arithmetic(rng: random.Random) -> str:
    lines = []
    for _ in range(rng.randint(6, 12)):
        a, b = rng.randint(0, 99), rng.randint(0, 99)
        op = rng.choice("+-*")
        result = a + b if op == "+" else a - b if op == "-" else a * b
        lines.append(f"{a} {op} {b} = {result}")
    return "\n".join(lines)


def sorting(rng: random.Random) -> str:
    lines = []
    for _ in range(rng.randint(4, 8)):
        values = [rng.randint(0, 99) for _ in range(rng.randint(4, 9))]
        lines.append(f"sort {' '.join(map(str, values))} -> {' '.join(map(str, sorted(values)))}")
    return "\n".join(lines)


def json_records(rng: random.Random) -> str:
    lines = []
    for _ in range(rng.randint(3, 6)):
        tags = ", ".join(f'"{t}"' for t in rng.sample(TAGS, rng.randint(0, 3)))
        lines.append(f'{{"id": {rng.randint(1, 9999)}, "name": "{rng.choice(NAMES)}", '
                     f'"age": {rng.randint(18, 90)}, "city": "{rng.choice(CITIES)}", '
                     f'"active": {rng.choice(["true", "false"])}, "tags": [{tags}]}}')
    return "\n".join(lines)


def logs(rng: random.Random) -> str:
    hour, minute, second = rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59)
    day = f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    lines = []
    for _ in range(rng.randint(5, 10)):
        second += rng.randint(0, 20)
        minute, second = minute + second // 60, second % 60
        hour, minute = (hour + minute // 60) % 24, minute % 60
        level = rng.choices([name for name, _ in LEVELS], [weight for _, weight in LEVELS])[0]
        status = 200 if level in ("INFO", "DEBUG") else rng.choice([404, 429, 500, 503])
        lines.append(f"{day} {hour:02d}:{minute:02d}:{second:02d} {level} {rng.choice(SERVICES)}-"
                     f"{rng.randint(1, 4)} GET {rng.choice(PATHS)} {status} {rng.randint(1, 400)}ms")
    return "\n".join(lines)


def code(rng: random.Random) -> str:
    functions = []
    for index in range(rng.randint(1, 3)):
        params = rng.sample(["a", "b", "c", "n", "x", "y"], rng.randint(1, 3))
        names = list(params)
        body = []
        for _ in range(rng.randint(1, 4)):
            target = rng.choice(["t", "s", "r", "k", "m"])
            left, right = rng.choice(names), rng.choice([*names, str(rng.randint(1, 9))])
            body.append(f"    {target} = {left} {rng.choice(['+', '-', '*', '//'])} {right}")
            names.append(target)
        if rng.random() < 0.5:
            body.append(f"    if {rng.choice(names)} > {rng.randint(0, 9)}:")
            body.append(f"        return {rng.choice(names)}")
        body.append(f"    return {names[-1]}")
        functions.append(f"def f{index}_{rng.choice(TAGS)}({', '.join(params)}):\n" + "\n".join(body))
    return "\n\n".join(functions)


def _noun_phrase(rng: random.Random) -> str:
    words = [rng.choice(["the", "a", "every", "one"])]
    if rng.random() < 0.5:
        words.append(rng.choice(ADJECTIVES))
    words.append(rng.choice(NOUNS))
    if rng.random() < 0.2:
        words += [rng.choice(PREPOSITIONS), "the", rng.choice(NOUNS)]
    return " ".join(words)


def _clause(rng: random.Random) -> str:
    words = [_noun_phrase(rng), rng.choice(VERBS), _noun_phrase(rng)]
    if rng.random() < 0.3:
        words.append(rng.choice(ADVERBS))
    return " ".join(words)


def prose(rng: random.Random) -> str:
    sentences = []
    for _ in range(rng.randint(3, 7)):
        sentence = _clause(rng)
        if rng.random() < 0.35:
            sentence += f" {rng.choice(CONJUNCTIONS)} {_clause(rng)}"
        sentences.append(sentence[0].upper() + sentence[1:] + ".")
    return " ".join(sentences)


DOMAINS: dict[str, Callable[[random.Random], str]] = {
    "arithmetic": arithmetic, "sorting": sorting, "json": json_records, "logs": logs, "code": code,
    "prose": prose,
}
