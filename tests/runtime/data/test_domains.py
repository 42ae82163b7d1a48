import logging

import numpy as np
import pytest

from shearc.errors import UserError
from shearc.runtime.data.domains import held_out, load_domains
from shearc.runtime.data.sampler import MixtureSampler

from ...helpers import data_plan, tiny_tokenizer, write_jsonl

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]


def _docs(count, length, offset=0):
    return [" ".join(WORDS[(i + j + offset) % len(WORDS)] for j in range(length)) for i in range(count)]


@pytest.fixture
def tokenizer(tmp_path):
    return tiny_tokenizer(tmp_path / "tok", [" ".join(WORDS)])


def _data(*domains, eval_fraction=0.0):
    return data_plan(*domains, eval_fraction=eval_fraction)


def test_packs_documents_with_bos_and_eos(tmp_path, tokenizer):
    write_jsonl(tmp_path / "a" / "train.jsonl", _docs(10, 5))
    write_jsonl(tmp_path / "a" / "eval.jsonl", _docs(2, 5))
    (domain,) = load_domains(_data({"name": "a", "train": ["a/train.jsonl"], "eval": ["a/eval.jsonl"]}),
                             base_dir=tmp_path, tokenizer=tokenizer, seq_len=8, seed=0, cache_dir=tmp_path / "c")
    # 10 documents of 5 words + BOS + EOS = 70 tokens -> 8 full sequences of 8
    assert domain.train.shape == (8, 8)
    stream = np.asarray(domain.train).reshape(-1)
    assert stream[0] == tokenizer.bos_token_id and stream[6] == tokenizer.eos_token_id
    assert tokenizer.decode(stream[1:6]) == _docs(1, 5)[0]
    assert len(domain.eval) == 14


def test_second_run_and_other_lengths_read_the_cache(tmp_path, tokenizer, monkeypatch):
    write_jsonl(tmp_path / "train.jsonl", _docs(20, 6))
    data = _data({"name": "a", "train": ["*.jsonl"], "eval": []}, eval_fraction=0.2)
    first = load_domains(data, base_dir=tmp_path, tokenizer=tokenizer, seq_len=8, seed=1, cache_dir=tmp_path / "c")

    def no_tokenizing(*args, **kwargs):
        raise AssertionError("tokenized again")

    monkeypatch.setattr("shearc.runtime.data.prepare.encode", no_tokenizing)
    again = load_domains(data, base_dir=tmp_path, tokenizer=tokenizer, seq_len=8, seed=1, cache_dir=tmp_path / "c")
    assert isinstance(again[0].train.stream, np.memmap)
    np.testing.assert_array_equal(np.asarray(first[0].train), np.asarray(again[0].train))
    np.testing.assert_array_equal(first[0].eval, again[0].eval)
    # another sequence length: other windows of the same stream, nothing tokenized
    other = load_domains(data, base_dir=tmp_path, tokenizer=tokenizer, seq_len=4, seed=1, cache_dir=tmp_path / "c")
    assert other[0].train.shape[1] == 4
    assert other[0].train.stream.filename == again[0].train.stream.filename
    np.testing.assert_array_equal(np.asarray(other[0].train)[:2].reshape(-1), np.asarray(again[0].train)[0])


def test_each_file_is_tokenized_once_whatever_the_lengths_and_heads(tmp_path, tokenizer, monkeypatch):
    from shearc.runtime.data import prepare

    for number in range(3):
        write_jsonl(tmp_path / f"a{number}.jsonl", _docs(12, 6, offset=number))
    write_jsonl(tmp_path / "b.jsonl", _docs(12, 5))
    calls = []
    encode = prepare.encode
    monkeypatch.setattr(prepare, "encode", lambda documents, *rest: calls.append(documents[0]) or encode(documents,
                                                                                                          *rest))
    data = _data({"name": "a", "train": ["a*.jsonl"], "eval": ["b.jsonl"]},
                 {"name": "b", "train": ["b.jsonl"], "eval": []}, eval_fraction=0.25)
    for seq_len, head in ((8, 16), (16, None), (8, None), (5, 40)):
        load_domains(data, base_dir=tmp_path, tokenizer=tokenizer, seq_len=seq_len, seed=0, cache_dir=tmp_path / "c",
                     head=head)
    assert sorted(calls) == sorted([_docs(1, 6, offset=n)[0] for n in range(3)] + [_docs(1, 5)[0]])


def test_a_head_waits_only_for_the_files_that_hold_it(tmp_path, tokenizer):
    for number in range(4):
        write_jsonl(tmp_path / f"a{number}.jsonl", _docs(10, 6, offset=number))  # 80 tokens a file
    data = _data({"name": "a", "train": ["a*.jsonl"], "eval": ["a0.jsonl"]})
    (head,) = load_domains(data, base_dir=tmp_path, tokenizer=tokenizer, seq_len=8, seed=0, cache_dir=tmp_path / "c",
                           head=100)
    assert len(list((tmp_path / "c" / "tokens").glob("*-lengths.npy"))) == 2  # a0 and a1 hold 160 >= 100
    assert head.train.shape == (20, 8)
    (whole,) = load_domains(data, base_dir=tmp_path, tokenizer=tokenizer, seq_len=8, seed=0, cache_dir=tmp_path / "c")
    assert whole.train.shape == (40, 8)
    np.testing.assert_array_equal(np.asarray(whole.train)[:20], np.asarray(head.train))


def test_a_head_with_held_out_documents_reads_files_until_both_streams_hold_it(tmp_path, tokenizer):
    for number in range(6):
        write_jsonl(tmp_path / f"a{number}.jsonl", _docs(10, 6, offset=number))  # 80 tokens a file
    data = _data({"name": "a", "train": ["a*.jsonl"], "eval": []}, eval_fraction=0.5)
    (head,) = load_domains(data, base_dir=tmp_path, tokenizer=tokenizer, seq_len=8, seed=0, cache_dir=tmp_path / "c",
                           head=60)
    (whole,) = load_domains(data, base_dir=tmp_path, tokenizer=tokenizer, seq_len=8, seed=0, cache_dir=tmp_path / "d")
    assert 60 <= len(head.eval) < len(whole.eval) and len(head.train.stream) >= 60
    assert len(list((tmp_path / "c" / "tokens").glob("*-lengths.npy"))) < 6
    # the head's streams begin the whole domain's: the same documents kept and held out, in the same order
    np.testing.assert_array_equal(head.eval, whole.eval[:len(head.eval)])
    np.testing.assert_array_equal(np.asarray(head.train), np.asarray(whole.train)[:len(head.train)])


def test_eval_fraction_is_deterministic_and_disjoint(tmp_path, tokenizer):
    texts = [f"{WORDS[i % 8]} {WORDS[(i * 3) % 8]} {WORDS[(i * 5) % 8]}" for i in range(200)]
    write_jsonl(tmp_path / "train.jsonl", texts)
    held = [i for i in range(200) if held_out(i, 7, 0.1)]
    assert 8 <= len(held) <= 35 and held == [i for i in range(200) if held_out(i, 7, 0.1)]
    (domain,) = load_domains(_data({"name": "a", "train": ["train.jsonl"], "eval": []}, eval_fraction=0.1),
                             base_dir=tmp_path, tokenizer=tokenizer, seq_len=5, seed=7, cache_dir=tmp_path / "c")
    assert len(domain.eval) == 5 * len(held)  # BOS + 3 words + EOS per held-out document
    assert np.asarray(domain.train).size == 5 * (200 - len(held))


def test_empty_domains_are_clear_errors(tmp_path, tokenizer):
    write_jsonl(tmp_path / "short.jsonl", ["alpha"])
    (tmp_path / "empty.jsonl").write_text("")
    write_jsonl(tmp_path / "ok.jsonl", _docs(10, 6))
    data = _data(
        {"name": "missing", "train": ["nothing/*.jsonl"], "eval": ["ok.jsonl"]},
        {"name": "short", "train": ["short.jsonl"], "eval": ["ok.jsonl"]},
        {"name": "no-eval", "train": ["ok.jsonl"], "eval": ["empty.jsonl"]},
    )
    with pytest.raises(UserError) as caught:
        load_domains(data, base_dir=tmp_path, tokenizer=tokenizer, seq_len=8, seed=0, cache_dir=tmp_path / "c")
    problems = {p.path: p.message for p in caught.value.problems}
    assert "no file matches" in problems["data.domains[0].train"]
    assert "fewer than 8 training tokens" in problems["data.domains[1].train"]
    assert "empty eval set" in problems["data.domains[2].eval"]


def test_missing_text_field(tmp_path, tokenizer):
    write_jsonl(tmp_path / "t.jsonl", _docs(3, 4), field="content")
    with pytest.raises(UserError, match="no field 'text'"):
        load_domains(_data({"name": "a", "train": ["t.jsonl"], "eval": ["t.jsonl"]}), base_dir=tmp_path,
                     tokenizer=tokenizer, seq_len=4, seed=0, cache_dir=tmp_path / "c")


def test_plain_text_and_parquet(tmp_path, tokenizer):
    import datasets

    (tmp_path / "a.txt").write_text("\n".join(_docs(6, 3)) + "\n")
    datasets.Dataset.from_dict({"text": _docs(6, 3, offset=1)}).to_parquet(str(tmp_path / "b.parquet"))
    domains = load_domains(_data({"name": "txt", "train": ["a.txt"], "eval": ["a.txt"]},
                                 {"name": "pq", "train": ["b.parquet"], "eval": ["b.parquet"]}),
                           base_dir=tmp_path, tokenizer=tokenizer, seq_len=5, seed=0, cache_dir=tmp_path / "c")
    assert [d.train.shape for d in domains] == [(6, 5), (6, 5)]
    assert tokenizer.decode(domains[1].train[0][1:4]) == _docs(1, 3, offset=1)[0]


def test_exhausted_domain_starts_a_new_epoch(tmp_path, tokenizer, caplog):
    write_jsonl(tmp_path / "small.jsonl", _docs(3, 6))  # 3 sequences of 8
    write_jsonl(tmp_path / "big.jsonl", _docs(40, 6))
    domains = load_domains(_data({"name": "small", "train": ["small.jsonl"], "eval": ["small.jsonl"]},
                                 {"name": "big", "train": ["big.jsonl"], "eval": ["big.jsonl"]}),
                           base_dir=tmp_path, tokenizer=tokenizer, seq_len=8, seed=0, cache_dir=tmp_path / "c")
    sampler = MixtureSampler(domains, seed=0)
    seen = []
    with caplog.at_level(logging.WARNING):
        for _ in range(4):
            batch = sampler.next_batch(np.array([1.0, 0.0]), 2)
            seen.extend(map(tuple, batch.input_ids))
    assert sampler.epochs[0] == 2 and "ran out of data" in caplog.text
    assert set(seen) == {tuple(row) for row in domains[0].train}  # every sequence, each epoch reshuffled


def test_malformed_file_is_named(tmp_path, tokenizer):
    (tmp_path / "bad.jsonl").write_text('{"text": "alpha"\n')
    with pytest.raises(UserError, match=r"bad\.jsonl: cannot read as json"):
        load_domains(_data({"name": "a", "train": ["bad.jsonl"], "eval": ["bad.jsonl"]}), base_dir=tmp_path,
                     tokenizer=tokenizer, seq_len=4, seed=0, cache_dir=tmp_path / "c")
