from dataclasses import replace

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from shearc.compiler import estimates as est
from shearc.compiler.source import introspect, read_config
from shearc.compiler.spec import Spec
from shearc.sections import FullRecoverySpec

from ..helpers import SPECS, tiny_spec


@pytest.fixture(scope="module")
def llama7b():
    path = SPECS / "models" / "llama-2-7b.json"
    return introspect(read_config(path), "card", path)


def _spec(**sections):
    return Spec.model_validate(tiny_spec("x", **sections))


def test_forward_flops_are_two_per_weight_plus_attention(llama7b):
    shape = llama7b.shape
    # every Linear weight including lm_head; not the embedding lookup, not the norms
    linear = 32 * (4 * 4096 * 4096 + 3 * 4096 * 11008) + 32000 * 4096
    assert est.matmul_params(llama7b, shape) == linear
    assert est.forward_flops_per_token(llama7b, shape, 4096) == 2 * linear + 2 * 32 * 4096 * 32 * 128
    assert est.forward_flops_per_token(llama7b, shape, 1) < est.forward_flops_per_token(llama7b, shape, 2048)


def test_fsdp_shards_states_and_checkpointing_shrinks_activations(llama7b):
    params = 6_738_415_616
    plain = est.training_memory(llama7b, llama7b.shape, _spec(), 4096, trained=params, frozen=0, masked=False)
    assert (plain.weights, plain.grads, plain.optimizer) == (4 * params, 4 * params, 8 * params)
    sharded = est.training_memory(llama7b, llama7b.shape, _spec(runtime={"devices": 8, "strategy": "fsdp2"}), 4096,
                                  trained=params, frozen=0, masked=False)
    assert sharded.optimizer == plain.optimizer // 8 and sharded.activations == plain.activations
    checkpointed = est.training_memory(llama7b, llama7b.shape, _spec(schedule={"activation_checkpointing": True}),
                                       4096, trained=params, frozen=0, masked=False)
    assert checkpointed.activations < plain.activations / 5
    masked = est.training_memory(llama7b, llama7b.shape, _spec(), 4096, trained=params, frozen=0, masked=True)
    assert masked.activations > plain.activations


def test_bf16_on_gpu_halves_activation_bytes(llama7b):
    fp32 = est.activation_bytes_per_token(llama7b, llama7b.shape, _spec(runtime={"device": "cpu"}), masked=False)
    bf16 = est.activation_bytes_per_token(llama7b, llama7b.shape, _spec(runtime={"precision": "bf16"}), masked=False)
    logits = 32000 * 8  # fp32 upcast and its gradient stay in fp32
    assert fp32 - logits - 32000 * 4 == 2 * (bf16 - logits - 32000 * 2)


def test_lora_parameters(llama7b):
    shape = replace(llama7b.shape, heads=16, kv_heads=16, hidden=2048, intermediate=5504, layers=24)
    per_layer = 8 * ((2048 + 2048) * 4 + (2048 + 5504) * 3)
    assert est.lora_params(llama7b, shape, 8, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                               "down_proj"]) == 24 * per_layer


def test_mask_count(llama7b):
    assert est.mask_units(llama7b, {"layer", "hidden"}) == 32 + 2 + 4096 + 2


# --- the estimate against what a training step really holds ----------------------------------

MEASURED_CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 4000,
                   "hidden_size": 256, "intermediate_size": 688, "num_hidden_layers": 4, "num_attention_heads": 4,
                   "num_key_value_heads": 2, "max_position_embeddings": 512, "tie_word_embeddings": False}


def _measure_step(model, extra_params, ids, before_forward=lambda: None):
    """Bytes of weights, gradients, AdamW states, and the activations alive when backward starts:
    those autograd saved, plus the output logits the caller still holds (by storage, each once)."""
    import torch

    optimizer = torch.optim.AdamW([*model.parameters(), *extra_params])
    saved = {}

    def pack(tensor):
        saved[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    before_forward()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        output = model(input_ids=ids, labels=ids)
    pack(output.logits)
    output.loss.backward()
    optimizer.step()
    params = list(model.parameters())
    return {
        "weights": sum(p.numel() * p.element_size() for p in params),
        "grads": sum(p.grad.numel() * p.grad.element_size() for p in params),
        "optimizer": sum(v.numel() * v.element_size() for p in params for v in optimizer.state[p].values()
                         if v.dim() > 0),
        "activations": sum(saved.values()),
        "masks": sum(3 * p.numel() * p.element_size() for p in extra_params),  # log-alphas + 2 AdamW moments
    }


@pytest.mark.parametrize("stage", ["recover", "prune"])
def test_memory_estimate_within_a_quarter_of_a_measured_step(tmp_path, stage):
    import json

    import torch
    from transformers import AutoModelForCausalLM

    from shearc.compiler.compile import compile_spec
    from shearc.compiler.families import Shape
    from shearc.compiler.source import hf_config
    from shearc.runtime.masks.hooks import MaskHooks
    from shearc.runtime.masks.l0 import L0Masks

    from ..helpers import write_spec

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text(json.dumps(MEASURED_CONFIG))
    training = {"steps": 10, "global_batch": 8, "seq_len": 128, "warmup_steps": 1, "eval_interval": 5}
    spec = tiny_spec("model", target={"heads": 2, "kv_heads": 1, "intermediate": 344, "hidden": 128, "layers": 3},
                     prune={"method": "hard-concrete", **training}, recovery={"method": "full", **training},
                     runtime={"device": "cpu"})
    plan = compile_spec(write_spec(tmp_path, spec), tmp_path / "plan.json")
    estimate = next(s for s in plan.stages if s.stage == stage).estimate.memory_bytes
    ids = torch.randint(0, 4000, (4, 128), generator=torch.Generator().manual_seed(0))  # micro-batch 4 x 128
    torch.manual_seed(0)
    if stage == "recover":
        measured = _measure_step(AutoModelForCausalLM.from_config(hf_config(plan.target.config)), [], ids)
    else:
        from shearc.compiler.source import introspect

        source = introspect(MEASURED_CONFIG, "local", None)
        model = AutoModelForCausalLM.from_config(hf_config(MEASURED_CONFIG))
        target = Shape(**plan.target.model_info.shape.model_dump())
        l0 = L0Masks(source.shape, target, [u.kind for u in plan.target.pruned_units],
                     plan.prune.params)
        hooks = MaskHooks(model, source.adapter)
        measured = _measure_step(model, list(l0.parameters()), ids, lambda: setattr(hooks, "values", l0.sample()))
    for part in ("weights", "grads", "optimizer"):
        assert getattr(estimate, part) == measured[part], part
    assert estimate.activations == pytest.approx(measured["activations"], rel=0.25)
    assert estimate.total == pytest.approx(sum(measured.values()), rel=0.25)


def test_drpruning_fits_count_the_updates_that_can_refit():
    from shearc.compiler.estimates import drpruning_fits
    from shearc.sections import DRPruningSpec

    mixer = DRPruningSpec(method="drpruning")  # history from 2%, fits from the 11th point and 10% of the stage
    # Sheared-LLaMA's pruning: 2% is step 64, so evals from 100 are recorded; the 11th is at 600, then 650..3200
    assert drpruning_fits(3200, 50, mixer) == 53
    assert drpruning_fits(150, 25, mixer) == 0  # six evals can never hold eleven points
    assert drpruning_fits(150, 10, mixer) == 5  # evals 10..150: the 11th at 110, then 120..150
    late = DRPruningSpec(method="drpruning", fit_history_after=0.5)
    assert drpruning_fits(100, 5, late) == 1  # from 50% in: evals 50..100 are eleven, the fit comes at 100


def _fits_by_listing(steps: int, eval_interval: int, mixer) -> int:
    """The count drpruning_fits makes, by walking every eval as the runtime meets them."""
    recorded = fits = 0
    for step in sorted({*range(eval_interval, steps + 1, eval_interval), steps}):
        if step / steps >= mixer.fit_history_after:
            recorded = min(recorded + 1, mixer.fit_max_points)
        fits += step / steps >= mixer.fit_min_progress and recorded >= mixer.fit_min_points
    return fits


@settings(max_examples=300, deadline=None)
@given(steps=st.integers(1, 400), eval_interval=st.integers(1, 60), history=st.sampled_from([0.0, 0.02, 0.3, 1.0]),
       progress=st.sampled_from([0.0, 0.1, 0.55, 1.0]), min_points=st.integers(1, 15), max_points=st.integers(1, 15))
def test_drpruning_fits_is_the_count_of_walking_every_eval(steps, eval_interval, history, progress, min_points,
                                                           max_points):
    from shearc.compiler.estimates import drpruning_fits
    from shearc.sections import DRPruningSpec

    assume(eval_interval <= steps)
    mixer = DRPruningSpec.model_construct(method="drpruning", fit_history_after=history, fit_min_progress=progress,
                                          fit_min_points=min_points, fit_max_points=max_points)
    assert drpruning_fits(steps, eval_interval, mixer) == _fits_by_listing(steps, eval_interval, mixer)


def test_drpruning_fits_of_a_stage_of_a_billion_billion_steps_are_counted_not_listed():
    from shearc.compiler.estimates import drpruning_fits
    from shearc.sections import DRPruningSpec

    # found by the spec fuzzer: listing its evals made compile run out of memory
    assert drpruning_fits(2**60 - 1, 5, DRPruningSpec(method="drpruning")) > 2**56


def test_a_drpruning_stage_that_can_never_fit_is_warned(models):
    from shearc.compiler.compile import compile_spec

    from ..helpers import write_spec

    spec = tiny_spec("llama-mha", mixer={"method": "drpruning", "reference": "source"},
                     prune={"method": "hard-concrete", "steps": 60, "eval_interval": 20, "warmup_steps": 5,
                            "seq_len": 64, "global_batch": 8})
    plan = compile_spec(write_spec(models, spec), models / "plan.json")
    assert any("prune: 60 steps with an eval every 20 never record" in w for w in plan.warnings)
    spec["prune"]["eval_interval"] = 5
    plan = compile_spec(write_spec(models, spec), models / "plan.json")
    assert not any("never record" in w for w in plan.warnings)


def test_reconstruction_on_few_calibration_tokens_per_kept_channel_is_warned(models):
    """The tiny target keeps 96 intermediate channels (and 4 x 8 head channels): 4 per channel is 384 tokens."""
    from shearc.compiler.compile import compile_spec

    from ..helpers import write_spec

    def warnings(samples: int) -> list[str]:
        refit = {"method": "least-squares", "calibration_samples": samples, "calibration_seq_len": 32}
        spec = tiny_spec("llama-mha", prune={"method": "magnitude", "reconstruct": refit})
        return [w for w in compile_spec(write_spec(models, spec), models / "plan.json").warnings
                if w.startswith("prune.reconstruct")]

    (few,) = warnings(11)  # 352 tokens
    assert "352 calibration tokens for a refit of 96 kept input channels" in few and "fewer than 4" in few
    assert warnings(12) == []  # 384


def test_distillation_costs_the_student_plus_the_teachers_forward_and_memory(llama7b):
    from shearc.compiler.shape import exact_shape

    target = exact_shape(llama7b, _spec(target={"layers": 24, "hidden": 2048, "heads": 16,
                                                "intermediate": 5504}).target)
    common = {"steps": 10, "global_batch": 8, "seq_len": 1024, "warmup_steps": 1, "eval_interval": 5}
    spec = _spec(recovery={"method": "distill", **common}, runtime={"precision": "bf16"})
    costing = est.Costing(llama7b, target, spec, frozenset())
    full = FullRecoverySpec(method="full", **common).cost(costing)
    distill = spec.recovery.cost(costing)
    tokens = 10 * 8 * 1024
    assert distill.tokens == full.tokens == tokens
    assert distill.flops - full.flops == est.forward_flops_per_token(llama7b, llama7b.shape, 1024) * tokens
    teacher = costing.teacher(1024)
    assert teacher.weights == costing.source_params * 2  # the teacher in bf16
    assert distill.memory.total == full.memory.total + teacher.total
    lora = spec.recovery.model_copy(update={"student": "lora", "target_modules": ["q_proj", "v_proj"]})
    assert lora.cost(costing).memory.total < distill.memory.total  # adapters train, the student's base is frozen


def test_fsdp2_shards_the_teacher_like_the_student(llama7b):
    from shearc.compiler.shape import exact_shape

    target = exact_shape(llama7b, _spec(target={"layers": 24, "hidden": 2048, "heads": 16,
                                                "intermediate": 5504}).target)
    recovery = {"method": "distill", "steps": 10, "global_batch": 32, "seq_len": 1024, "warmup_steps": 1,
                "eval_interval": 5}
    whole, sharded = (est.Costing(llama7b, target, _spec(recovery=recovery, runtime=runtime), frozenset())
                      for runtime in ({"precision": "bf16", "devices": 8, "strategy": "ddp"},
                                      {"precision": "bf16", "devices": 8, "strategy": "fsdp2"}))
    assert whole.teacher(1024).weights == whole.source_params * 2
    assert sharded.teacher(1024).weights == whole.teacher(1024).weights // 8
    assert sharded.teacher(1024).activations == whole.teacher(1024).activations  # logits are per process


def test_the_finalize_estimate_writes_the_shards_the_runtime_writes():
    """The source beside one shard (or the largest tensor) at a time, never beside the whole dense model; the
    compiler's shard size is the runtime's."""
    from shearc.runtime.dense_shards import SHARD_BYTES

    assert est.DENSE_SHARD_BYTES == SHARD_BYTES
    source = introspect(MEASURED_CONFIG, "local", None)
    spec = Spec.model_validate(tiny_spec("model", runtime={"device": "cpu"}, prune={"method": "magnitude"}))
    target = replace(source.shape, layers=2, intermediate=344)
    memory = est.finalize_memory(source, target, spec, check_tokens=128)
    held = est.count_params(source, source.shape) * est.source_bytes(spec)
    dense = est.count_params(source, target) * 4  # 27 MiB: less than a shard, all of it written at once
    assert memory.weights == held + 2 * max(min(SHARD_BYTES, dense), est.largest_dense_tensor(source, target))
    assert memory.weights == held + 2 * dense
    big = replace(source, vocab=300_000)  # an embedding larger than a shard: it is what is written at a time
    assert est.largest_dense_tensor(big, target) == 300_000 * target.hidden * 4 > SHARD_BYTES


@pytest.mark.parametrize("method", ["hard-concrete", "magnitude"])
def test_sharded_stages_after_pruning_hold_a_share_or_one_model_per_process(llama7b, method):
    """Under FSDP2 on 8 processes: finalize holds its share of what pruning changed (nothing of a source it left as
    it was) and what it reads at a time; evaluate the larger model, whole on rank 0 for its latency, not both;
    export, on any number, the reloaded model alone."""
    prune = {"method": method, **({} if method == "hard-concrete" else {"reconstruct": None})}
    one, eight = (_spec(prune=prune, runtime={"devices": n, "strategy": "fsdp2"}) for n in (1, 8))
    target = replace(llama7b.shape, layers=24, hidden=2048, heads=16, kv_heads=16, intermediate=5504)
    source_held = est.count_params(llama7b, llama7b.shape) * est.source_bytes(one)
    at_a_time = 2 * max(est.DENSE_SHARD_BYTES, est.largest_dense_tensor(llama7b, target))
    sharded = est.finalize_memory(llama7b, target, eight, 128).weights
    assert sharded == (source_held // 8 if method == "hard-concrete" else 0) + at_a_time
    assert est.finalize_memory(llama7b, target, one, 128).weights == source_held + at_a_time
    source, dense = (est.count_params(llama7b, shape) * size
                     for shape, size in ((llama7b.shape, est.compute_bytes(one)), (target, 4)))
    both = ["source", "result"]
    assert est.evaluate_weights(llama7b, target, one, both) == source + dense
    assert est.evaluate_weights(llama7b, target, eight, both) == max(source, dense)
    assert est.evaluate_weights(llama7b, target, eight, both, downstream=True) == source + dense  # lm-eval: whole
    shares = est.evaluate_weights(llama7b, target, eight, [])  # no latency: each process its share of one model
    root = 2 * 32000 * 4096 * est.compute_bytes(one)  # the source's embedding and head, whole on every process
    assert shares == (source - root) // 8 + root
    exported = est.count_params(llama7b, target) * 2  # bf16, the default: the reloaded model alone
    assert est.export_memory(llama7b, target, eight).weights == est.export_memory(llama7b, target, one).weights
    assert est.export_memory(llama7b, target, one).weights == exported


def test_latency_is_measured_only_for_a_model_that_fits_one_device(llama7b):
    """Computing in bf16, the 7B source (12.6 GiB) and its 2.9B result, held in fp32 (10.9 GiB), fit 80 GB; on a
    12 GiB device only the result does, and on 8 GiB neither."""
    target = replace(llama7b.shape, layers=24, hidden=3072, heads=24, kv_heads=24, intermediate=8192)
    measured = {gib: est.latency_models(llama7b, target, _spec(runtime={"device_memory_gib": gib, "precision": "bf16"}),
                                        2048) for gib in (80, 12, 8)}
    assert measured == {80: ["source", "result"], 12: ["result"], 8: []}


def test_a_70b_plan_on_one_node_measures_only_the_results_latency_and_says_its_host_memory(tmp_path):
    """bench/compile_70b.yaml on 8 x 80 GB: the bf16 source (128 GiB) fits no device, so only the 16.6B result's
    latency is measured; every stage's host memory per process is well inside the node's (1 TB over 8 processes);
    hard-concrete reads the fp32 source sharded, so no device's prune peak comes near the whole of it."""
    from shearc.compiler.compile import compile_spec

    from ..helpers import REPO

    plan = compile_spec(REPO / "bench" / "compile_70b.yaml", tmp_path / "plan.json")
    stages = {stage.stage: stage for stage in plan.stages}
    assert stages["evaluate"].latency_of == ["result"]
    source_fp32 = plan.source.model_info.params * 4
    assert stages["prune"].estimate.memory_bytes.total < source_fp32 / 1.5
    hosts = {name: stage.estimate.host_memory_bytes for name, stage in stages.items()}
    assert all(0 < host < 2**40 / 8 for host in hosts.values()), hosts
    assert max(hosts, key=hosts.get) == "export"  # its reload check: the 16.6B result in bf16 on rank 0
    assert hosts["export"] >= plan.target.model_info.params * 2


def test_host_memory_on_a_cpu_is_the_device_estimate_and_on_gpus_what_passes_through(llama7b):
    target = replace(llama7b.shape, layers=24, hidden=2048, heads=16, kv_heads=16, intermediate=5504)
    cpu, gpu = _spec(runtime={"device": "cpu"}), _spec(runtime={"device": "cuda", "devices": 8, "strategy": "fsdp2"})
    assert est.host_memory("finalize", llama7b, target, cpu, 123) == 123
    read = 2 * 32000 * 4096 * 4  # the embedding as read, and cast to fp32
    assert est.host_memory("evaluate", llama7b, target, gpu, 10**12) == read
    assert est.host_memory("prune", llama7b, target, gpu, 10**12) == read  # sharded checkpoints: a tensor at a time
    whole = _spec(runtime={"device": "cuda"}, prune={"method": "hard-concrete"})
    trained = est.count_params(llama7b, llama7b.shape) * 4  # rank 0's model.safetensors, serialised whole
    assert est.host_memory("prune", llama7b, target, whole, 10**12) == trained
    with pytest.raises(ValueError, match="no host memory model"):
        est.host_memory("train", llama7b, target, gpu, 0)


def test_a_model_loaded_whole_before_sharding_floors_the_stage_and_one_read_sharded_does_not(llama7b):
    """A scoring method (or LoRA's recovery) loads its model whole onto every device first; hard-concrete and full
    recovery under FSDP2 on several processes read theirs sharded."""
    cost = est.StageCost(tokens=1, steps=1, flops=1, memory=est.Memory(10, 0, 0, 0, 0))
    assert est.loaded_whole(cost, 100).memory.total == 100 and est.loaded_whole(cost, 0) is cost
    target = replace(llama7b.shape, layers=24, hidden=2048, heads=16, kv_heads=16, intermediate=5504)
    costing = est.Costing(llama7b, target, _spec(), frozenset())
    sharded = {"devices": 8, "strategy": "fsdp2"}
    dense = costing.target_params * 4
    assert est.recovery_loads(_spec(runtime=sharded, recovery={"method": "full"}), costing) == 0
    assert est.recovery_loads(_spec(runtime=sharded, recovery={"method": "lora"}), costing) == dense
    assert est.recovery_loads(_spec(recovery={"method": "full"}), costing) == dense
