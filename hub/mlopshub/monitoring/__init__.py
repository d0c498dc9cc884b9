"""Production model monitoring: what the endpoints answered, how the live data compares with the training data.

* :mod:`.store`: each team's monitoring store (``<pipeline dir>/monitoring/<team>.sqlite``): captured requests and
  responses, outcomes, baselines, drift results and capture settings.
* :mod:`.capture`: the models service's capture, off the request path (a bounded queue, one writer thread).
* :mod:`.stats`: baselines, population stability index, distribution tests and quality figures (numpy/scipy).
* :mod:`.metrics`: the Prometheus metrics of the models service and the pipeline.
* :mod:`.monitor`: what the pipeline computes and shows from a store (traffic, drift, quality, the report).
"""
