"""shearc.compiler: spec -> plan. Never touches weights, data or a GPU."""
