"""The HTTP routers, one module per area, each a thin adapter over :mod:`voce.service.deps` and the layers below:

* :mod:`.ops` - ``/health``, ``/ready``, ``/info``, ``/metrics`` and ``/v1/taxonomy``;
* :mod:`.analyze` - ``POST /v1/analyze`` (and the legacy ``/analyze``);
* :mod:`.batches` - ``/v1/batches``, over :class:`voce.service.batches.service.BatchService`;
* :mod:`.pages` - the web pages and their static assets.
"""
