"""The front door never shows a traceback: a mutated spec compiles or exits 2 naming what is wrong, and never
leaves a plan behind; a mutated plan is read or refused the same way; so is text that is not YAML at all.

Seeded (derandomized), so a failure reproduces; 500 cases here in all (SHEARC_FUZZ_SCALE multiplies them;
bench/fuzz_specs.py runs many more).
"""

import json
import os
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shearc.cli import main
from shearc.compiler.compile import compile_spec

from .fuzz import mutated
from .helpers import tiny_spec, write_model_dir

SCALE = int(os.environ.get("SHEARC_FUZZ_SCALE", "1"))
# Module level: hypothesis runs the test body many times per call, so the tiny model lives outside fixtures.
ROOT = Path(tempfile.mkdtemp(prefix="shearc-fuzz-"))
write_model_dir(ROOT, "mistral-gqa")
VALID_SPEC = tiny_spec("mistral-gqa", target={"heads": 4, "kv_heads": 1, "intermediate": 96},
                       recovery={"method": "lora", "steps": 10, "global_batch": 8, "seq_len": 32, "warmup_steps": 1,
                                 "eval_interval": 5}, mixer={"method": "drpruning", "reference": "source"})
(ROOT / "valid.yaml").write_text(yaml.safe_dump(VALID_SPEC))
VALID_PLAN = compile_spec(ROOT / "valid.yaml", ROOT / "valid.plan.json").as_json()



def fuzz(cases: int) -> settings:
    return settings(max_examples=cases * SCALE, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])


def _front_door(capsys, code: int, output: Path) -> None:
    err = capsys.readouterr().err
    assert code in (0, 2), err
    assert "Traceback" not in err
    if code == 2:
        assert "problem" in err, err  # the problems are listed, each where it is
        assert not output.exists(), "a refused input left its output behind"


@fuzz(300)
@given(spec=mutated(VALID_SPEC))
def test_mutated_specs_compile_or_exit_2_naming_what_is_wrong(capsys, spec):
    path, plan = ROOT / "spec.yaml", ROOT / "plan.json"
    plan.unlink(missing_ok=True)
    path.write_text(yaml.safe_dump(spec, allow_unicode=True))
    _front_door(capsys, main(["compile", str(path), "-o", str(plan)]), plan)
    if plan.exists():
        json.loads(plan.read_text())


@fuzz(150)
@given(plan=mutated(VALID_PLAN))
def test_mutated_plans_are_read_or_refused_with_exit_2(capsys, plan):
    path = ROOT / "mutated.plan.json"
    path.write_text(json.dumps(plan))
    code = main(["explain", str(path)])
    err = capsys.readouterr().err
    assert code in (0, 2) and "Traceback" not in err, err


@fuzz(50)
@given(text=st.one_of(st.text(max_size=300), st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
                      st.sampled_from(["[1, 2", "a: [", "{", "- - -", "name: !!python/object:os.system x", "\t:",
                                       "a: &x [*x]", "? complex key", "---\n---\n"])))
def test_text_that_is_not_a_spec_exits_2(capsys, text):
    path, plan = ROOT / "text.yaml", ROOT / "text.plan.json"
    plan.unlink(missing_ok=True)
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    _front_door(capsys, main(["compile", str(path), "-o", str(plan)]), plan)
