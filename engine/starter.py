"""A folder in, a starter config out: ``engine init`` writes a commented ``routes.yaml`` and a
``profiles/ci.yaml`` that points every provider at the bundled fake provider, refusing to replace
files that exist unless forced."""

from __future__ import annotations

from pathlib import Path

from engine.fake.run import DEFAULT_HOST, DEFAULT_PORT

__all__ = ["CI_PROFILE", "ROUTES", "StarterExists", "write_starter"]

ROUTES = """\
# yaml-language-server: $schema=./routes.schema.json
# routes.yaml, written by `engine init`: which providers exist, how patient to be with them, and
# where each request goes. The language: docs/reference.md of the engine repository.
#
#   engine check --strict              validate (every problem located; warnings fail too)
#   engine plan --model chat           dry run: the route, the targets in order, timeouts, body
#   engine schema -o routes.schema.json   editor completion (see the first line)
#
# No API keys yet? Run `engine fake` in another terminal and add `--profile ci` (or set
# ENGINE_PROFILE=ci): profiles/ci.yaml points every provider at it.
version: 1

# Built in, shown here so you know they exist; uncomment a line to change it.
# defaults:
#   speed: medium        # timeouts and retries: fast, medium or slow (or a speed of your own)
#   retry: transient     # 5xx, 429 and network errors are retried, then fail over
#   breaker: standard    # 5 failures in a row open a provider's circuit for 60s; 'none' for none
#   deadline: 60s        # one request's whole budget: every try, backoff and failover

providers:
  openai:
    kind: openai                     # the wire protocol: openai, anthropic, gemini or ollama
    api_key: ${OPENAI_API_KEY}       # read from the environment, shown as *** everywhere
    speed: fast                      # built in: connect 5s, read 10s, 2 retries
    models:                          # prices in USD per 1M tokens give every response a cost
      gpt-4o-mini: {context: 128000, price: {input: 0.15, output: 0.60}}
  anthropic:
    kind: anthropic
    api_key: ${ANTHROPIC_API_KEY}
    speed: fast
    models:
      claude-3-5-haiku-latest: {context: 200000, price: {input: 0.80, output: 4.00}}

groups:
  chat:                              # one name for "a good, cheap chat model"
    strategy: priority               # the first target first, the next one when it fails
    targets: [openai/gpt-4o-mini, anthropic/claude-3-5-haiku-latest]

cache:
  responses: {ttl: 10m, max_temperature: 0}   # answers to temperature-0 requests are reused

routes:                              # the first route that matches takes the request
  - match: {model: chat}
    to: chat
  - match: {model: "gpt-*"}          # a glob: the request's own model goes to openai
    to: openai
  - match: {model: "claude-*"}
    to: anthropic
  - match: {}                        # everything else
    to: chat
"""

CI_PROFILE = f"""\
# The ci profile, merged onto routes.yaml with `--profile ci` or ENGINE_PROFILE=ci: every provider
# on the bundled fake provider (start it with `engine fake`), no API keys, short timeouts so that
# faults show quickly. Mappings merge, lists replace, null removes a key.
defaults:
  deadline: 20s
speeds:
  fast: {{connect: 500ms, read: 2s, pool: 1s, retries: 2, backoff: {{base: 50ms, max: 200ms}}}}
providers:
  openai:    {{base_url: "http://{DEFAULT_HOST}:{DEFAULT_PORT}/v1", api_key: fake-openai-key}}
  anthropic: {{base_url: "http://{DEFAULT_HOST}:{DEFAULT_PORT}/v1", api_key: fake-anthropic-key}}
"""

FILES = {"routes.yaml": ROUTES, "profiles/ci.yaml": CI_PROFILE}


class StarterExists(FileExistsError):
    """Some of the files ``engine init`` would write are there already (nothing was written)."""

    def __init__(self, paths: list[Path]) -> None:
        super().__init__(", ".join(map(str, paths)))
        self.paths = paths


def write_starter(folder: str | Path = ".", *, force: bool = False) -> list[Path]:
    """Write the starter files into ``folder`` (created if needed); returns their paths. Raises
    ``StarterExists`` before writing anything when one exists and ``force`` is false."""
    root = Path(folder)
    paths = [root / name for name in FILES]
    existing = [p for p in paths if p.exists()]
    if existing and not force:
        raise StarterExists(existing)
    for path, text in zip(paths, FILES.values(), strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return paths
