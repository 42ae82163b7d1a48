"""Score-based selection on tiny models: the estimators match brute force, the shapes are exact."""

import pytest
import torch

from shearc.compiler.families import ADAPTERS, Shape
from shearc.compiler.graph import build_graph
from shearc.compiler.source import hf_config, introspect
from shearc.runtime.importance.gradients import accumulate_gradients
from shearc.runtime.importance.methods import IMPORTANCE_METHODS
from shearc.runtime.importance.scores import taylor_element_scores
from shearc.runtime.importance.selection import round_shape, score_and_select
from shearc.runtime.importance.units import unit_scores
from shearc.runtime.slicing import finalize_state
from shearc.sections import MagnitudePruneSpec, TaylorPruneSpec

from ...helpers import TINY_CONFIGS


def _setup(name):
    from transformers import AutoModelForCausalLM

    config = TINY_CONFIGS[name]
    source = introspect(config, "local", None)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(hf_config(config))
    return config, source, model


def _samples(vocab, count=4, length=12, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab, (length,), generator=generator) for _ in range(count)]


def _loss(model, samples):
    """In the model's dtype (transformers' own loss upcasts logits to float32 only)."""
    with torch.no_grad():
        total = 0.0
        for sample in samples:
            logits = model(input_ids=sample[None]).logits[0, :-1]
            total += torch.nn.functional.cross_entropy(logits, sample[1:]).item()
        return total / len(samples)



def test_vector_score_is_the_loss_derivative_of_shrinking_each_channel():
    """A KV group's vector-wise score sums |d L / d eps| for W -> (1 - eps) W on one channel alone (a row
    of q, k or v, a column of o), over every channel of every member (LLM-Pruner's per-channel |sum|,
    members summed per channel, channels summed)."""
    config, source, model = _setup("mistral-gqa")
    model = model.double()
    samples = _samples(config["vocab_size"])
    graph = build_graph(source)
    grads, _ = accumulate_gradients(model, samples, second_order=False)
    elements = {n: taylor_element_scores(p, grads[n], None, "vector").double() for n, p in model.named_parameters()}
    scores = unit_scores(graph, elements, aggregation="sum", finish="abs")
    unit, group = ("unit", "kv_group", 1), 1
    eps = 1e-3  # transformers' RMSNorm runs in float32 even in a float64 model: smaller steps hit its noise
    derivatives = []
    for _, node in graph.out_edges(unit):
        if node[0] != "slice":
            continue
        param = model.get_parameter(node[1])
        width = param.shape[node[2]] // graph.nodes[unit]["count"]
        original = param.detach().clone()
        for channel in range(group * width, (group + 1) * width):
            losses = []
            for factor in (1 - eps, 1 + eps):
                with torch.no_grad():
                    param.copy_(original)
                    param.narrow(node[2], channel, 1).mul_(factor)
                losses.append(_loss(model, samples))
            derivatives.append((losses[1] - losses[0]) / (2 * eps))
        with torch.no_grad():
            param.copy_(original)
    assert len(derivatives) == 32 + 8 + 8 + 32  # q rows and o columns of 4 query heads; k and v rows
    assert scores[("kv_group", 1)][group].item() == pytest.approx(sum(abs(d) for d in derivatives), rel=1e-3)



@pytest.mark.parametrize("name", ["llama-mha", "mistral-gqa", "qwen2-bias"])
@pytest.mark.parametrize("method", [
    TaylorPruneSpec(method="taylor", estimator="element-mix", iterations=2),
    TaylorPruneSpec(method="taylor", estimator="vector", aggregation="max"),
    MagnitudePruneSpec(method="magnitude", norm="l1", aggregation="prod"),
], ids=lambda m: f"{m.method}-{m.estimator if m.method == 'taylor' else m.norm}")
def test_every_granularity_reaches_the_exact_target(name, method):
    from transformers import AutoModelForCausalLM

    config, source, model = _setup(name)
    shape = source.shape
    target = Shape(
        layers=shape.layers - 1, hidden=32, heads=shape.heads // 2, kv_heads=max(1, shape.kv_heads // 2),
        intermediate=shape.intermediate // 2, head_dim=shape.head_dim)
    importance = IMPORTANCE_METHODS.get(method.method)(method)
    masks = score_and_select(model, source.adapter, build_graph(source), shape, target, importance,
                             lambda: _samples(config["vocab_size"]))
    state, reached = finalize_state(model.state_dict(), source.adapter, masks, shape,
                                    tied=config["tie_word_embeddings"])
    assert reached == target
    dense = AutoModelForCausalLM.from_config(hf_config(source.adapter.config_for(config, reached)))
    dense.load_state_dict(state, strict=True)


def test_rounds_move_linearly():
    adapter = ADAPTERS.get("LlamaForCausalLM")
    shape = adapter.shape_of(hf_config(TINY_CONFIGS["llama-mha"]))
    target = Shape(2, 32, 4, 4, 88, 8)
    assert round_shape(shape, target, 1, 2).intermediate == 132 and round_shape(shape, target, 2, 2) == target
