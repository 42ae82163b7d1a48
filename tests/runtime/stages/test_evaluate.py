"""The evaluate stage's report: source and result measured on the same sequences and the same latency batch."""

import math

import torch

from shearc.compiler.source import hf_config
from shearc.runtime.data import domain_eval_losses
from shearc.runtime.data.domains import DomainData
from shearc.runtime.stages.evaluate import compare
from shearc.sections import EvalSpec

from ...helpers import TINY_CONFIGS

PARAMS = EvalSpec(seq_len=16, sequences_per_domain=3, latency_batch=2)


def _model(seed):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(hf_config(TINY_CONFIGS["llama-mha"])).eval()


def _domains():
    generator = torch.Generator().manual_seed(0)
    return [DomainData(name, train=torch.zeros(1, 16, dtype=torch.int64).numpy(),
                       eval=torch.randint(0, 512, (100,), generator=generator).numpy()) for name in ("a", "b")]


def test_the_report_holds_each_models_own_losses_and_latency():
    source, result, domains = _model(0), _model(1), _domains()
    report = compare(source, result, domains, PARAMS, vocab=512, seed=0, batch_size=2, device=torch.device("cpu"))
    assert report["domains"] == ["a", "b"] and report["seq_len"] == 16 and report["latency_batch"] == 2
    for side, model in (("source", source), ("result", result)):
        expected = domain_eval_losses(model, domains, seq_len=16, max_sequences=3, batch_size=2)
        assert [d["loss"] for d in report[side]["domains"]] == [float(x) for x in expected]
        assert all(math.isclose(d["perplexity"], math.exp(d["loss"])) for d in report[side]["domains"])
        assert report[side]["params"] == sum(p.numel() for p in model.parameters())
        assert report[side]["latency_ms"] > 0
        assert math.isclose(report[side]["tokens_per_second"], 2 * 16 / (report[side]["latency_ms"] / 1000))
    assert report["source"]["domains"] != report["result"]["domains"]  # two different models, told apart


def test_a_model_left_out_of_latency_of_is_reported_not_measured_and_read_as_such():
    """A model that fits no one device (the plan leaves it out of latency_of) has its losses but a null latency;
    the report's table, the runs' comparison and the model card say it was not measured."""
    from rich.console import Console

    from shearc.report.compare import source_row
    from shearc.report.records import RunRecord
    from shearc.report.tables import size_and_speed
    from shearc.runtime.stages.export import latency_text

    source, result, domains = _model(0), _model(1), _domains()
    report = compare(source, result, domains, PARAMS, vocab=512, seed=0, batch_size=2, device=torch.device("cpu"),
                     latency_of=["result"])
    assert report["source"]["latency_ms"] is None and report["source"]["tokens_per_second"] is None
    assert report["source"]["domains"] and report["result"]["latency_ms"] > 0
    console = Console(width=120, record=True)
    console.print(size_and_speed(report))
    text = console.export_text()
    assert text.count("not measured") == 3 and "does not fit one device" in text  # two cells and the caption
    row = source_row([RunRecord(run_dir=None, plan={}, metrics=[], report=report)])
    assert "latency (ms)" not in row and "tokens/s" not in row and "loss a" in row
    assert latency_text(report).startswith("source not measured (it does not fit one device), result ")
