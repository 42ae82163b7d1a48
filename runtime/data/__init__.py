"""Training data: files tokenized once into a shared cache, domains as streams, windows as views; sampled by
the mixer's weights."""

from .domains import DomainData, load_domains, load_tokenizer
from .evaluation import domain_eval_losses
from .prepare import Preparer, PrepStats
from .sampler import Batch, MixtureSampler

__all__ = ["Batch", "DomainData", "MixtureSampler", "PrepStats", "Preparer", "domain_eval_losses",
           "load_domains", "load_tokenizer"]
