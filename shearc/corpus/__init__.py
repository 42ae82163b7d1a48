"""A seeded multi-domain text corpus, so the embedded default needs no download.

    shearc corpus specs/tiny/data        # six domains, train.jsonl and eval.jsonl each
"""
