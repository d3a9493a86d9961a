"""`make bench`: the operator against a real kube-apiserver + etcd and the discovery emulator.

Scenarios (``python -m bench --scenarios ...``):

- ``fleet``: N DirectServices x 10 instances, polls done vs scheduled, timer lateness,
  operator CPU and memory, API server writes in steady state;
- ``propagation``: delay from a changed discovery answer to the EndpointSlice watch event;
- ``large``: one 10,000-instance service: time to publish, writes per kind of change;
- ``curve``: the fleet at several sizes (CPU per poll, memory per service);
- ``profile``: pyinstrument hot spots of the operator in steady state (and a restart);
- ``http``: the operator's HttpClient vs aiohttp and ``requests`` in threads, for
  discovery GETs at a fixed rate.

The rewrite-all baseline is computed from the changes of ``propagation`` and ``large``.
Results are printed and written to docs/benchmarks.md (``--quick``: to the work dir).
"""
