"""``sockspec bench``: what each architecture costs, measured.

The conformance suite shows whether a server is right; this package shows
what its pattern costs: throughput, latency, memory, threads and processes
over a matrix of connection counts, pipeline depths and commands, with
redis-server measured in the same run as the baseline, and the C10K test
(ten thousand connections held at once, and the memory each costs).

- ``command``: the command line, and the run from start to reports;
- ``workload``: what each cell sends and expects, from the profiles' dialects;
- ``driver``: the load generator's worker process (standard library only);
- ``drivers``: the controller's side of the drivers;
- ``latency``: the latency histogram the drivers fill and the controller merges;
- ``servers``: starting targets (through suite.targets.factory) and sampling their process tree;
- ``redis_benchmark``: the third-party load generator, on the cells where it applies;
- ``matrix``, ``c10k``: the two measurements;
- ``report``, ``html``: the JSON, the terminal tables and the HTML page with the plots.
"""
