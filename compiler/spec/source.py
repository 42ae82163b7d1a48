"""`source:` the pretrained model to prune.

    source:
      model: meta-llama/Llama-2-7b-hf
      config_card: models/llama-2-7b.json   # compiles offline when the model is not cached
"""

from __future__ import annotations

from pydantic import Field

from shearc.sections import Section


class SourceSpec(Section):
    model: str = Field(
        min_length=1,
        description="Hugging Face model id or local directory of the pretrained model. `compile` needs only "
        "its config.json (local directory or local Hugging Face cache); `run` loads its weights.",
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) of `model`.")
    config_card: str | None = Field(
        None,
        min_length=1,
        description="A config.json to compile against when `model` is not found locally, as a path relative "
        "to the spec file (cards for common models ship in specs/models/). `run` still checks the real "
        "model's config against it.",
    )
    trust_remote_code: bool = Field(False, description="Allow custom modeling code from the model repository.")
