"""Batches: an uploaded file analysed row by row into the database, then read back as KPIs, rows and exports.

One module per role, so a change lands in one place:

* :mod:`.store` - every database read and write of a job (leases, chunks, rows).
* :mod:`.rows` - the one owner of a stored row: the record built from an analysis, the facts the KPIs
  aggregate, the export columns and the API's row item.
* :mod:`.runner` - the pipeline that analyses one claimed batch (:func:`~.runner.analyze_chunk` is pure).
* :mod:`.executor` - who runs queued batches: the :class:`~.executor.BatchExecutor` protocol and the
  in-process :class:`~.executor.LocalExecutor`.
* :mod:`.service` - what the routers, the page and the CLI call; raises the domain errors of :mod:`.errors`.
* :mod:`.schemas` and :mod:`.exports` - the shapes and files a batch is read back as.
"""
