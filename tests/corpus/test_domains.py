"""Each generated domain is what it says: answers are right, JSON parses, output is sorted."""

import json
import random
import re

from shearc.corpus.domains import DOMAINS, arithmetic, json_records, logs, sorting


def test_arithmetic_answers_are_correct():
    rng = random.Random(0)
    for _ in range(50):
        for line in arithmetic(rng).splitlines():
            a, op, b, equals, result = line.split()
            assert equals == "=" and int(result) == eval(f"{a} {op} {b}")  # digits and one operator only


def test_sorting_outputs_are_the_sorted_inputs():
    rng = random.Random(0)
    for _ in range(50):
        for line in sorting(rng).splitlines():
            given, answer = line.removeprefix("sort ").split(" -> ")
            assert sorted(map(int, given.split())) == list(map(int, answer.split()))


def test_json_records_parse():
    rng = random.Random(0)
    for _ in range(50):
        for line in json_records(rng).splitlines():
            assert set(json.loads(line)) == {"id", "name", "age", "city", "active", "tags"}


def test_log_times_never_go_backwards():
    rng = random.Random(0)
    for _ in range(50):
        times = [re.match(r"\d{4}-\d\d-\d\d (\d\d:\d\d:\d\d) ", line).group(1) for line in logs(rng).splitlines()]
        assert times == sorted(times) or times[0] > times[-1]  # sorted, unless it wrapped past midnight


def test_domains_differ_in_how_predictable_they_are():
    """Compressed size per character: the domains are not one distribution under different names."""
    import zlib

    ratios = {}
    for name, generate in DOMAINS.items():
        rng = random.Random(1)
        text = "\n".join(generate(rng) for _ in range(300)).encode()
        ratios[name] = len(zlib.compress(text, 9)) / len(text)
    assert len(DOMAINS) >= 6
    assert max(ratios.values()) > 1.5 * min(ratios.values()), ratios
