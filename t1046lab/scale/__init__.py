"""Out-of-core runs: the pipeline on data larger than memory.

* :mod:`t1046lab.scale.streaming`: one machine, chunks read one after another, window
  state carried across chunk boundaries (``window_features`` and ``detect`` accept an
  iterator of canonical chunks).
* :mod:`t1046lab.scale.dask_engine`: the same on a ``dask.dataframe`` (``pip install
  t1046lab[dask]``), on a local or remote ``dask.distributed`` cluster.

Both give exactly the in-memory result; ``docs/scale.md`` has the design and the figures.
"""
