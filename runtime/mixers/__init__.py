"""Data mixers, registered under the compiler's YAML names: constant, dynamic-batch-loading, drpruning."""

from . import constant, drpruning, dynamic_batch_loading  # noqa: F401  (registration)
from .base import MIXER_IMPLEMENTATIONS, Mixer, Observation, StageInfo, build_mixer, log_stage_start, update_and_log

__all__ = ["MIXER_IMPLEMENTATIONS", "Mixer", "Observation", "StageInfo", "build_mixer", "log_stage_start",
           "update_and_log"]
