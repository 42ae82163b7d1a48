"""`data:` the training domains and their initial mixture.

    data:
      domains:
        - {name: cc, train: [data/cc/*.jsonl], eval: [data/cc/eval.jsonl], weight: 0.67, reference_loss: 1.9643}
"""

from __future__ import annotations

from pydantic import Field, model_validator

from shearc.sections import RuleError, Section

WEIGHT_SUM_TOLERANCE = 1e-3


class DomainSpec(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="Domain name used in logs and plots.")
    train: list[str] = Field(
        min_length=1,
        description="Training files or globs, relative to the spec file: JSON lines with a text field, "
        "parquet, or plain text.",
    )
    eval: list[str] = Field(
        [], description="Held-out eval files or globs; if empty, `data.eval_fraction` of the documents is held out."
    )
    weight: float = Field(gt=0, le=1, description="Initial sampling proportion; weights sum to 1.")
    reference_loss: float | None = Field(
        None, gt=0, description="Target eval loss of this domain for the dynamic mixers (e.g. a scaling-law fit)."
    )


class DataSpec(Section):
    domains: list[DomainSpec] = Field(min_length=1, description="The training domains.")
    tokenizer: str | None = Field(None, description="Tokenizer id or directory; default: the source model's.")
    text_field: str = Field("text", min_length=1, description="Field holding the text in JSON lines and parquet.")
    eval_fraction: float = Field(
        0.0, ge=0, lt=1, description="Fraction of each domain's documents held out for eval when it lists no "
        "eval files (chosen deterministically from the seed)."
    )
    window_bos: bool | None = Field(
        None, description="Begin every window of text (training, calibration, evaluation, the finalize check) "
        "with the tokenizer's BOS token: true or false; null (default): as the source's tokenizer begins a text."
    )

    @model_validator(mode="after")
    def _consistent(self) -> DataSpec:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        seen: dict[str, int] = {}
        for index, domain in enumerate(self.domains):
            if domain.name in seen:
                problems.append((("domains", index, "name"),
                                 f"domain {domain.name!r} is already named at domains[{seen[domain.name]}]"))
            seen.setdefault(domain.name, index)
            if not domain.eval and self.eval_fraction == 0:
                problems.append((("domains", index, "eval"),
                                 f"domain {domain.name!r} has no eval files; list some or set data.eval_fraction"))
        total = sum(domain.weight for domain in self.domains)
        if abs(total - 1.0) > WEIGHT_SUM_TOLERANCE:
            problems.append((("domains",), f"domain weights sum to {total:.6g}, expected 1"))
        if problems:
            raise RuleError(problems)
        return self

    def normalised_weights(self) -> list[float]:
        total = sum(domain.weight for domain in self.domains)
        return [domain.weight / total for domain in self.domains]
