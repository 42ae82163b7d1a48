"""Per-stage peaks: the resident high-water mark resets at a stage's start and sees what the stage allocates."""

import torch

from shearc.runtime.memory import peaks, release_freed, reset_peaks, resident_bytes

CPU = torch.device("cpu")


def test_a_stage_peak_sees_its_own_allocations_and_not_earlier_ones():
    big = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
    del big
    release_freed()
    reset_peaks(CPU)
    before = peaks(CPU)["peak_rss_bytes"]
    assert before < resident_bytes() + 32 * 2**20  # the earlier 64 MiB no longer counts
    block = torch.ones(96 * 2**20 // 4)
    during = peaks(CPU)["peak_rss_bytes"]
    assert during - before >= 90 * 2**20
    del block
