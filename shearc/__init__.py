"""shearc: a compiler for LLM compression recipes.

`shearc compile spec.yaml` lowers a YAML recipe to a resolved `plan.json`;
`shearc run plan.json` executes it. See README.md.
"""

__version__ = "0.1.0"
