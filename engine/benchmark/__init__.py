"""``engine bench``: N requests (C at a time) to each target a route can reach, each target alone
(no failover, no retries, no breaker, no response cache), and per target the latency p50/p95/p99,
time to first token, output tokens per second, error rate by kind and cost.

``measure`` builds the one-target routes and sends the requests; ``report`` computes the figures
and prints them (text or JSON); ``plot`` draws the latency distributions (matplotlib, optional);
``cli`` is the command.
"""
