"""A chunk of a distributed render, drawn without Ray: what each Ray task runs."""

import numpy as np

from engine import distributed
from engine import show as shows

from .conftest import DEFAULT_SHOW


def test_a_worker_reads_the_model_once_for_all_its_chunks():
    distributed._MODELS.clear()
    first = distributed.render_chunk(shows.load(DEFAULT_SHOW), 3, 5, 20, (64, 64), "cpu", None)
    cached = next(iter(distributed._MODELS.values())).module
    second = distributed.render_chunk(shows.load(DEFAULT_SHOW), 3, 5, 20, (64, 64), "cpu", None)
    assert len(distributed._MODELS) == 1 and next(iter(distributed._MODELS.values())).module is cached
    assert np.array_equal(first, second)  # each chunk had its own copy: nothing carried over
