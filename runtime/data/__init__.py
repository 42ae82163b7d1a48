"""Training data: domains read with `datasets`, tokenized, packed, cached; sampled by the mixer's weights."""

from .domains import DomainData, load_domains, load_tokenizer
from .evaluation import domain_eval_losses
from .sampler import Batch, MixtureSampler

__all__ = ["Batch", "DomainData", "MixtureSampler", "domain_eval_losses", "load_domains", "load_tokenizer"]
