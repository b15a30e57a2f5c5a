"""engine.compiler: built-in defaults, reference resolution with did-you-mean, cycles, expanded
defaults, worst-case budgets and warnings. Each error case mutates one key of the known-good
config (conftest.GOOD) and asserts the problem, its path and its line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.cli import main
from engine.compiler import compile_file, compile_text
from engine.errors import ConfigError, Problem
from engine.graph import Group, RoutingGraph, Target
from engine.result import Usage

MINIMAL = """\
version: 1
providers:
  openai: {kind: openai, api_key: sk-x}
routes:
  - to: openai
"""


# -- built-in defaults ------------------------------------------------------------------------


def test_minimal_file_compiles_with_builtin_defaults(tmp_path: Path) -> None:
    g = compile_text(MINIMAL, env={}, base_dir=tmp_path)
    assert set(g.speeds) == {"fast", "medium", "slow"}
    assert set(g.classifiers) == {"transient", "never"}
    assert set(g.breakers) == {"standard"}
    assert g.deadline == 60.0
    fast, medium, slow = g.speeds["fast"], g.speeds["medium"], g.speeds["slow"]
    assert (fast.connect, fast.read, fast.pool, fast.retries) == (5, 10, 3, 2)
    assert (fast.backoff.base, fast.backoff.factor, fast.backoff.max, fast.backoff.jitter) == (1, 2, 8, 0.5)
    assert (medium.connect, medium.read, medium.pool, medium.retries, medium.backoff.base) == (
        10,
        15,
        5,
        3,
        1.5,
    )
    assert (slow.connect, slow.read, slow.pool, slow.retries, slow.backoff.base) == (30, 30, 5, 4, 2)
    t = g.classifiers["transient"]
    assert t.retry_status == {408, 429, 500, 502, 503, 504}
    assert t.retry_errors == {"timeout", "connect", "reset"}
    assert t.failover_status == {401, 403, 404, 408, 429, 500, 502, 503, 504}
    assert t.failover_errors == {"timeout", "connect", "reset", "protocol"}
    assert t.honor_retry_after
    never = g.classifiers["never"]
    assert never.retry_status == set() and never.retry_errors == set()
    br = g.breakers["standard"]
    assert (br.failures, br.recovery, br.scope) == (5, 60.0, "provider")
    assert (g.cache.backend, g.cache.models_ttl, g.cache.responses_ttl) == ("memory", 3600.0, None)
    p = g.providers["openai"]
    assert (p.speed.name, p.retry.name, p.breaker and p.breaker.name) == ("medium", "transient", "standard")
    assert p.base_url == "https://api.openai.com/v1"
    assert (p.pool.max_connections, p.pool.max_keepalive) == (100, 20)
    assert len(g.routes) == 1 and g.routes[0].deadline == 60.0


def test_written_sections_add_to_the_builtins(good: RoutingGraph) -> None:
    assert set(good.speeds) == {"fast", "medium", "slow", "quick"}
    assert set(good.classifiers) == {"transient", "never", "patient"}
    assert set(good.breakers) == {"standard", "touchy"}


def test_overriding_a_builtin_keeps_its_other_values(cfg: Any, tmp_path: Path) -> None:
    text = cfg.replace("speeds:\n", "speeds:\n  fast: {read: 20s}\n")
    fast = cfg.compile(text).speeds["fast"]
    assert (fast.connect, fast.read, fast.retries, fast.backoff.jitter) == (5, 20, 2, 0.5)


def test_speed_extends(cfg: Any) -> None:
    text = cfg.replace("speeds:\n", "speeds:\n  snail: {extends: quick, read: 9s}\n")
    snail = cfg.compile(text).speeds["snail"]
    assert (snail.connect, snail.read, snail.retries, snail.backoff.base) == (1, 9, 1, 0.1)


def test_classifier_omitted_fields_take_transients(good: RoutingGraph) -> None:
    patient, transient = good.classifiers["patient"], good.classifiers["transient"]
    assert patient.retry_status == {429, 503} and patient.retry_errors == {"timeout"}
    assert patient.failover_status == transient.failover_status
    assert patient.failover_errors == transient.failover_errors
    assert patient.honor_retry_after is False


def test_defaults_are_expanded_onto_providers(good: RoutingGraph) -> None:
    claude, local, openai = (good.providers[n] for n in ("claude", "local", "openai"))
    assert (claude.speed.name, claude.retry.name, claude.breaker and claude.breaker.name) == (
        "fast",
        "transient",
        "standard",
    )
    assert claude.base_url == "https://api.anthropic.com/v1"
    assert local.base_url == "http://localhost:11434" and local.breaker is None
    assert local.api_key is None
    assert (openai.speed.name, openai.retry.name, openai.breaker and openai.breaker.name) == (
        "quick",
        "patient",
        "touchy",
    )
    assert list(local.models) == ["llama3.2"]
    price = openai.models["gpt-4o-mini"].price
    assert price is not None and (price.input, price.output) == (0.15, 0.60)
    assert openai.template_path == "templates/openai/chat.json.j2"


def test_defaults_section_changes_every_provider_that_does_not_say(cfg: Any) -> None:
    text = cfg.replace("  retry: transient\n  breaker: standard\n", "  retry: never\n  breaker: none\n")
    g = cfg.compile(text)
    assert g.providers["claude"].retry.name == "never" and g.providers["claude"].breaker is None
    assert g.providers["openai"].retry.name == "patient"  # says otherwise


def test_group_defaults(good: RoutingGraph) -> None:
    chat, mix = good.groups["chat"], good.groups["mix"]
    assert chat.max_attempts == 2 and [m.weight for m in chat.members] == [1.0, 1.0]
    assert mix.strategy == "weighted" and [m.weight for m in mix.members] == [3.0, 1.0]
    assert mix.members[0].node is chat  # nested groups are the same node
    assert isinstance(mix.members[1].node, Target) and mix.members[1].node.key == "local/llama3.2"


def test_max_response_is_a_size_with_a_default(cfg: Any, good: RoutingGraph) -> None:
    assert {p.max_response for p in good.providers.values()} == {32 * 1024 * 1024}
    text = cfg.replace("    speed: slow\n", "    speed: slow\n    max_response: 512KB\n")
    assert cfg.compile(text).providers["local"].max_response == 512_000
    text = cfg.replace("    speed: slow\n", "    speed: slow\n    max_response: 65536\n")
    assert cfg.compile(text).providers["local"].max_response == 65536


def test_a_bad_max_response_is_located(cfg: Any) -> None:
    text = cfg.replace("    speed: slow\n", "    speed: slow\n    max_response: lots\n")
    p = cfg.one_error(text)
    assert p.path == "providers.local.max_response" and "expected a size" in p.message
    assert p.line == cfg.line_of(text, "max_response: lots")


def test_provider_alone_passes_the_model_through(good: RoutingGraph) -> None:
    route = good.routes[2]
    assert isinstance(route.to, Target) and route.to.model is None
    assert route.to.model_for("llama3.3") == "llama3.3"


def test_model_names_may_contain_slashes_and_colons(cfg: Any) -> None:
    text = cfg.replace("models: [llama3.2]", "models: [llama3.2, 'org/model:7b']")
    text = cfg.replace("    to: local\n", "    to: local/org/model:7b\n", text)
    route = cfg.compile(text).routes[2]
    assert isinstance(route.to, Target) and route.to.model == "org/model:7b"


# -- worst case -------------------------------------------------------------------------------


def test_worst_case_numbers(good: RoutingGraph) -> None:
    assert good.speeds["quick"].worst_case() == pytest.approx(6.1)  # (1+2)*2 + 0.1
    assert good.speeds["fast"].worst_case() == pytest.approx(49.0)  # 15*3 + 1.5 + 2.5
    assert good.speeds["medium"].worst_case() == pytest.approx(110.5)  # 25*4 + 1.5+3+6
    assert good.speeds["slow"].worst_case() == pytest.approx(330.0)  # 60*5 + 2+4+8+16
    assert [r.worst_case for r in good.routes] == pytest.approx([55.1, 385.1, 330.0, 55.1])
    assert [r.deadline for r in good.routes] == [60.0, 420.0, 600.0, 60.0]
    assert [[t.key for t in r.targets] for r in good.routes] == [
        ["openai/gpt-4o-mini", "claude/claude-3-5-haiku-latest"],
        ["openai/gpt-4o-mini", "claude/claude-3-5-haiku-latest", "local/llama3.2"],
        ["local"],
        ["openai/gpt-4o-mini", "claude/claude-3-5-haiku-latest"],
    ]


def test_max_attempts_bounds_the_worst_case(cfg: Any) -> None:
    text = cfg.replace("    max_attempts: 2\n", "    max_attempts: 1\n")
    assert cfg.compile(text).routes[1].worst_case == pytest.approx(330.0)  # the costliest one


def test_shipped_config_compiles_without_errors() -> None:
    g = compile_file(
        Path(__file__).parents[2] / "routes.yaml",
        env={
            "OPENAI_API_KEY": "k",
            "ANTHROPIC_API_KEY": "k",
            "GROQ_API_KEY": "k",
            "TOGETHER_API_KEY": "k",
            "GEMINI_API_KEY": "k",
        },
    )
    assert len(g.providers) == 6 and len(g.groups) == 4 and len(g.routes) == 8
    assert g.warnings == ()


@pytest.mark.parametrize("profile", ["ci", "local", "production"])
def test_shipped_profiles_compile(profile: str) -> None:
    g = compile_file(Path(__file__).parents[2] / "routes.yaml", profile=profile, env={})
    assert g.profile == profile


# -- references, one mutation at a time -------------------------------------------------------

REFERENCE_CASES = [
    # (old, new, path, message, hint)
    (
        "    speed: quick\n",
        "    speed: quikc\n",
        "providers.openai.speed",
        "unknown speed 'quikc'",
        "did you mean 'quick'?",
    ),
    (
        "    retry: patient\n",
        "    retry: patiant\n",
        "providers.openai.retry",
        "unknown retry classifier 'patiant'",
        "did you mean 'patient'?",
    ),
    (
        "    breaker: touchy\n",
        "    breaker: touhcy\n",
        "providers.openai.breaker",
        "unknown breaker 'touhcy'",
        "did you mean 'touchy'?",
    ),
    (
        "  speed: medium\n",
        "  speed: meduim\n",
        "defaults.speed",
        "unknown speed 'meduim'",
        "did you mean 'medium'?",
    ),
    (
        "  retry: transient\n",
        "  retry: transent\n",
        "defaults.retry",
        "unknown retry classifier 'transent'",
        "did you mean 'transient'?",
    ),
    (
        "  breaker: standard\n",
        "  breaker: standart\n",
        "defaults.breaker",
        "unknown breaker 'standart'",
        "did you mean 'standard'?",
    ),
    (
        "targets: [openai/gpt-4o-mini, claude/",
        "targets: [openai/gpt-4o-mini, claud/",
        "groups.chat.targets[1]",
        "unknown provider 'claud'",
        "did you mean 'claude'?",
    ),
    (
        "targets: [openai/gpt-4o-mini, claude/",
        "targets: [openai/gpt-4o-mni, claude/",
        "groups.chat.targets[0]",
        "unknown model 'gpt-4o-mni' for provider 'openai'",
        "did you mean 'gpt-4o-mini'?",
    ),
    (
        "{target: chat, weight: 3}",
        "{target: caht, weight: 3}",
        "groups.mix.targets[0]",
        "unknown provider or group 'caht'",
        "did you mean 'chat'?",
    ),
    (
        "    to: mix\n",
        "    to: mxi\n",
        "routes[1].to",
        "unknown provider or group 'mxi'",
        "did you mean 'mix'?",
    ),
    (
        "    to: local\n",
        "    to: locla\n",
        "routes[2].to",
        "unknown provider or group 'locla'",
        "did you mean 'local'?",
    ),
    (
        "{target: local/llama3.2, weight: 1}",
        "{target: local/llama3.3, weight: 1}",
        "groups.mix.targets[1]",
        "unknown model 'llama3.3' for provider 'local'",
        "did you mean 'llama3.2'?",
    ),
    (
        "    to: mix\n",
        "    to: mix/gpt\n",
        "routes[1].to",
        "'mix' is a group: a group takes no '/model'",
        "write 'mix'",
    ),
    (
        "    kind: ollama\n",
        "    kind: ollama\n    template: templates/ollama/chta.json.j2\n",
        "providers.local.template",
        "template 'templates/ollama/chta.json.j2' not found",
        "looked",
    ),
]


@pytest.mark.parametrize(
    "old, new, path, message, hint", REFERENCE_CASES, ids=[c[3] for c in REFERENCE_CASES]
)
def test_unknown_reference(cfg: Any, old: str, new: str, path: str, message: str, hint: str) -> None:
    text = cfg.replace(old, new)
    p = cfg.one_error(text)
    assert p.path == path
    assert p.message == message
    assert hint in p.hint
    needle = new.strip().splitlines()[-1] if "template" in new else new.strip()
    assert p.line == cfg.line_of(text, needle)
    assert p.file == "routes.yaml"
    assert p.snippet == text.splitlines()[p.line - 1]


def test_reference_columns_point_at_the_value(cfg: Any) -> None:
    text = cfg.replace("    to: mix\n", "    to: mxi\n")
    p = cfg.one_error(text)
    assert p.col == len("    to: ") + 1
    text = cfg.replace("targets: [openai/gpt-4o-mini, claude/", "targets: [openai/gpt-4o-mini, claud/")
    p = cfg.one_error(text)
    assert p.snippet[p.col - 1 :].startswith("claud/")


VALUE_CASES = [
    # (old, new, path, message fragment)
    ("  deadline: 60s\n", "  deadline: 60 secs\n", "defaults.deadline", "expected a duration"),
    ("  deadline: 60s\n", "  deadline: -1s\n", "defaults.deadline", "expected a duration"),
    ("retries: 1, backoff", "retries: -1, backoff", "speeds.quick.retries", "greater than or equal to 0"),
    ("retries: 1, backoff", "retries: lots, backoff", "speeds.quick.retries", "valid integer"),
    (
        "{failures: 2, recovery: 10s",
        "{failures: 0, recovery: 10s",
        "breakers.touchy.failures",
        "greater than or equal to 1",
    ),
    ("scope: model}", "scope: modle}", "breakers.touchy.scope", "invalid value 'modle'"),
    (
        "status: [429, 503]",
        "status: [429, 5003]",
        "retry.patient.retry_on.status[1]",
        "less than or equal to 599",
    ),
    ("errors: [timeout]", "errors: [timeuot]", "retry.patient.retry_on.errors[0]", "invalid value 'timeuot'"),
    (
        "    retry_after: ignore\n",
        "    retry_after: never\n",
        "retry.patient.retry_after",
        "invalid value 'never'",
    ),
    ("    kind: anthropic\n", "    kind: antropic\n", "providers.claude.kind", "invalid value 'antropic'"),
    (
        "    strategy: weighted\n",
        "    strategy: weigthed\n",
        "groups.mix.strategy",
        "invalid value 'weigthed'",
    ),
    (
        "{target: local/llama3.2, weight: 1}",
        "{target: local/llama3.2, weight: -1}",
        "groups.mix.targets[1].weight",
        "greater than 0",
    ),
    (
        "    max_attempts: 2\n",
        "    max_attempts: 0\n",
        "groups.mix.max_attempts",
        "greater than or equal to 1",
    ),
    ("    deadline: 7m\n", "    deadline: seven\n", "routes[1].deadline", "expected a duration"),
    ("    to: mix\n", "    to: /mix\n", "routes[1].to", "is not a target"),
    ("  backend: memory\n", "  backend: memcache\n", "cache.backend", "must be 'memory'"),
    (
        "{ttl: 10m, max_temperature: 0.1}",
        "{ttl: 10m, max_temperature: 5}",
        "cache.responses.max_temperature",
        "less than or equal to 2",
    ),
    (
        "    base_url: https://api.openai.com/v1\n",
        "    base_url: api.openai.com\n",
        "providers.openai.base_url",
        "is not an http(s) URL",
    ),
    (
        "{context: 128000, price",
        "{context: -5, price",
        "providers.openai.models.gpt-4o-mini.context",
        "greater than or equal to 1",
    ),
    (
        "  - match: {metadata: {tier: free}}\n",
        "  - match: {metadata: {tier: [free]}}\n",
        "routes[1].match.metadata.tier",
        "a metadata value must be",
    ),
    (
        "    strategy: weighted\n",
        "    strategy: hedged\n",
        "groups.mix.strategy",
        "strategy hedged needs hedge_after",
    ),
]


@pytest.mark.parametrize("old, new, path, message", VALUE_CASES, ids=[c[2] + ":" + c[3] for c in VALUE_CASES])
def test_bad_value(cfg: Any, old: str, new: str, path: str, message: str) -> None:
    text = cfg.replace(old, new)
    p = cfg.one_error(text)
    assert p.path == path
    assert message in p.message
    assert p.line == cfg.line_of(text, new.strip())


UNKNOWN_KEY_CASES = [
    # (old, new, shown path, key, suggestion)
    ("  deadline: 60s\n", "  dedline: 60s\n", "defaults", "dedline", "deadline"),
    ("{connect: 1s,", "{conect: 1s,", "speeds.quick", "conect", "connect"),
    ("{base: 100ms,", "{bsae: 100ms,", "speeds.quick.backoff", "bsae", "base"),
    ("    retry_after: ignore\n", "    retry_afer: ignore\n", "retry.patient", "retry_afer", "retry_after"),
    ("{failures: 2,", "{failurs: 2,", "breakers.touchy", "failurs", "failures"),
    ("  models: {ttl: 1h}\n", "  models: {tll: 1h}\n", "cache.models", "tll", "ttl"),
    (
        "    api_key: ${ANTHROPIC_API_KEY}\n",
        "    apikey: ${ANTHROPIC_API_KEY}\n",
        "providers.claude",
        "apikey",
        "api_key",
    ),
    ("{context: 128000,", "{contxt: 128000,", "providers.openai.models.gpt-4o-mini", "contxt", "context"),
    (
        "price: {input: 0.15,",
        "price: {inptu: 0.15,",
        "providers.openai.models.gpt-4o-mini.price",
        "inptu",
        "input",
    ),
    ("    max_attempts: 2\n", "    max_attempt: 2\n", "groups.mix", "max_attempt", "max_attempts"),
    ("{target: chat, weight: 3}", "{target: chat, weihgt: 3}", "groups.mix.targets[0]", "weihgt", "weight"),
    ("    deadline: 7m\n", "    dealine: 7m\n", "routes[1]", "dealine", "deadline"),
    (
        "  - match: {metadata: {tier: free}}\n",
        "  - match: {metdata: {tier: free}}\n",
        "routes[1].match",
        "metdata",
        "metadata",
    ),
    ("routes:\n", "route:\n", "", "route", "routes"),
]


@pytest.mark.parametrize(
    "old, new, shown, key, suggestion", UNKNOWN_KEY_CASES, ids=[c[3] for c in UNKNOWN_KEY_CASES]
)
def test_unknown_key_with_did_you_mean(
    cfg: Any, old: str, new: str, shown: str, key: str, suggestion: str
) -> None:
    text = cfg.replace(old, new)
    errs = cfg.errors(text)
    p = next(e for e in errs if f"'{key}'" in e.message)
    assert p.message in (f"unknown key '{key}'", f"unknown top-level key '{key}'")
    assert p.path == shown
    assert p.hint == f"did you mean '{suggestion}'?"
    assert p.line == cfg.line_of(text, new.strip())
    assert p.snippet[p.col - 1 :].startswith(key)  # the caret is on the key itself


def test_missing_required_keys(cfg: Any) -> None:
    p = cfg.one_error(cfg.replace("    kind: ollama\n", ""))
    assert (p.path, p.message) == ("providers.local", "missing required key 'kind'")
    assert p.line == cfg.line_of(cfg.text, "  local:")
    p = cfg.one_error(cfg.replace("  - match: {model: chat}\n    to: chat\n", "  - match: {model: chat}\n"))
    assert (p.path, p.message) == ("routes[0]", "missing required key 'to'")
    p = cfg.one_error(cfg.replace("version: 1\n", ""))
    assert (p.line, p.col, p.message) == (1, 1, "missing required key 'version'")


# -- cycles -----------------------------------------------------------------------------------


def test_group_cycle_is_named(cfg: Any) -> None:
    text = cfg.replace("claude/claude-3-5-haiku-latest]", "claude/claude-3-5-haiku-latest, mix]")
    p = cfg.one_error(text)
    assert p.message == "group cycle: chat -> mix -> chat"
    assert p.path == "groups.mix.targets[0]"
    assert p.line == cfg.line_of(text, "{target: chat, weight: 3}")


def test_self_cycle(cfg: Any) -> None:
    text = cfg.replace("claude/claude-3-5-haiku-latest]", "claude/claude-3-5-haiku-latest, chat]")
    p = cfg.one_error(text)
    assert p.message == "group cycle: chat -> chat" and p.path == "groups.chat.targets[2]"


def test_long_cycle(cfg: Any) -> None:
    text = cfg.replace(
        "groups:\n", "groups:\n  a: {targets: [b]}\n  b: {targets: [c]}\n  c: {targets: [local, a]}\n"
    )
    text = cfg.replace("    to: local\n", "    to: a\n", text)
    p = cfg.one_error(text)
    assert p.message == "group cycle: a -> b -> c -> a"


def test_diamond_is_not_a_cycle(cfg: Any) -> None:
    text = cfg.replace("groups:\n", "groups:\n  top: {targets: [chat, mix]}\n")
    text = cfg.replace("    to: local\n", "    to: top\n", text)
    g = cfg.compile(text)
    assert [m.node.name for m in g.groups["top"].members if isinstance(m.node, Group)] == ["chat", "mix"]


# -- one pass ---------------------------------------------------------------------------------


def test_every_problem_is_found_in_one_pass(cfg: Any) -> None:
    text = cfg.replace("    speed: quick\n", "    speed: quikc\n")
    text = cfg.replace("    to: mix\n", "    to: mxi\n", text)
    text = cfg.replace("    deadline: 10m\n", "    deadline: ten\n", text)
    text = cfg.replace("{failures: 2,", "{failurs: 2,", text)
    errs = cfg.errors(text)
    assert [e.path for e in errs] == [
        "breakers.touchy",
        "providers.openai.speed",
        "routes[1].to",
        "routes[2].deadline",
    ]
    assert [e.line for e in errs] == sorted(e.line for e in errs)


def test_a_broken_definition_is_not_also_unknown_where_used(cfg: Any) -> None:
    p = cfg.one_error(cfg.replace("{failures: 2,", "{failures: many,"))
    assert p.path == "breakers.touchy.failures"


def test_config_error_str_lists_located_problems(cfg: Any) -> None:
    with pytest.raises(ConfigError) as info:
        cfg.compile(cfg.replace("    speed: quick\n", "    speed: quikc\n"))
    text = str(info.value)
    assert text.splitlines()[0] == "1 configuration error"
    line = cfg.line_of(cfg.text, "speed: quick")
    assert (
        f"routes.yaml:{line}:12: error: unknown speed 'quikc' in providers.openai.speed "
        "(did you mean 'quick'?)" in text
    )


# -- warnings ---------------------------------------------------------------------------------


def test_known_good_config_has_no_warnings(good: RoutingGraph) -> None:
    assert good.warnings == ()


def _warning(cfg, text: str, **kw: object) -> Problem:
    (w,) = cfg.compile(text, **kw).warnings
    assert w.severity == "warning"
    return w


def test_warning_worst_case_over_deadline(cfg: Any) -> None:
    text = cfg.replace("    deadline: 7m\n", "    deadline: 5m\n")
    w = _warning(cfg, text)
    assert w.message == "worst case 385.1s exceeds the deadline 5m"
    assert w.path == "routes[1].to" and w.line == cfg.line_of(text, "to: mix")


def test_warning_unused_provider(cfg: Any) -> None:
    text = cfg.replace("  local:\n", "  spare: {kind: ollama}\n  local:\n")
    w = _warning(cfg, text)
    assert w.message == "provider 'spare' is not reachable from any route"
    assert w.path == "providers.spare" and w.line == cfg.line_of(text, "spare:")


def test_warning_unused_group(cfg: Any) -> None:
    text = cfg.replace("groups:\n", "groups:\n  idle: {targets: [local]}\n")
    w = _warning(cfg, text)
    assert w.message == "group 'idle' is not reachable from any route"
    assert w.path == "groups.idle" and w.line == cfg.line_of(text, "idle:")


def test_warning_shadowed_route(cfg: Any) -> None:
    text = cfg.replace('  - match: {model: "llama*"}\n', "  - match: {model: chat}\n")
    w = _warning(cfg, text)
    assert w.message == "route 2 can never match: route 0 matches everything it does"
    second = [i for i, x in enumerate(text.splitlines(), 1) if "{model: chat}" in x][1]
    assert w.path == "routes[2]" and w.line == second


def test_warning_route_after_catch_all(cfg: Any) -> None:
    text = cfg.text + "  - match: {model: extra}\n    to: chat\n"
    w = _warning(cfg, text)
    assert w.message == "route 4 can never match: route 3 matches everything it does"


def test_warning_empty_api_key(cfg: Any) -> None:
    w = _warning(cfg, cfg.text, env={"ANTHROPIC_API_KEY": "x"})
    assert w.path == "providers.openai.api_key" and "api_key is empty" in w.message
    assert w.line == cfg.line_of(cfg.text, "${OPENAI_API_KEY}")


def test_warning_hedge_after_ignored(cfg: Any) -> None:
    text = cfg.replace("    strategy: priority\n", "    strategy: priority\n    hedge_after: 1s\n")
    w = _warning(cfg, text)
    assert w.path == "groups.chat.hedge_after" and "ignored" in w.message


def test_warnings_are_in_file_order(cfg: Any) -> None:
    text = cfg.replace("  local:\n", "  spare: {kind: ollama}\n  local:\n")
    text = cfg.replace("    deadline: 7m\n", "    deadline: 5m\n", text)
    g = cfg.compile(text, env={})
    lines = [w.line for w in g.warnings]
    assert len(lines) == 4 and lines == sorted(lines)


def test_strict_fails_on_warnings(
    cfg: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ENGINE_PROFILE", raising=False)
    for name, value in cfg.env.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "routes.yaml"
    path.write_text(cfg.text)
    assert main(["check", str(path), "--strict"]) == 0
    path.write_text(cfg.replace("    deadline: 7m\n", "    deadline: 5m\n"))
    assert main(["check", str(path)]) == 0
    assert main(["check", str(path), "--strict"]) == 1
    err = capsys.readouterr().err
    assert "warning: worst case 385.1s exceeds the deadline 5m" in err
    assert "1 warning (--strict)" in err


# -- shapes and templates ---------------------------------------------------------------------


def test_empty_routes_is_an_error(cfg: Any) -> None:
    text = cfg.text[: cfg.text.index("routes:\n")] + "routes: []\n"
    p = cfg.one_error(text)
    assert p.path == "routes" and "'routes' is empty" in p.message


@pytest.mark.parametrize(
    "old, new, path, message",
    [
        (
            "backoff: {base: 100ms, factor: 2, max: 1s}",
            "backoff: 1s",
            "speeds.quick.backoff",
            "expected a mapping (key: value), got a string ('1s')",
        ),
        (
            "    targets: [openai/gpt-4o-mini, claude/claude-3-5-haiku-latest]\n",
            "    targets: openai/gpt-4o-mini\n",
            "groups.chat.targets",
            "expected a list, got a string ('openai/gpt-4o-mini')",
        ),
        (
            "  - match: {model: chat}\n",
            "  - match: null\n",
            "routes[0].match",
            "expected a mapping (key: value), got nothing (null)",
        ),
    ],
)
def test_wrong_shape(cfg: Any, old: str, new: str, path: str, message: str) -> None:
    p = cfg.one_error(cfg.replace(old, new))
    assert (p.path, p.message) == (path, message)


def _with_template(cfg: Any, tmp_path: Path, source: str) -> str:
    (tmp_path / "mine.json.j2").write_text(source)
    return cfg.replace("    kind: ollama\n", "    kind: ollama\n    template: mine.json.j2\n")


def test_custom_template_is_used(cfg: Any, tmp_path: Path) -> None:
    text = _with_template(cfg, tmp_path, '{"model": {{ model }}, "messages": {{ messages }}}\n')
    assert cfg.compile(text).providers["local"].template_path == "mine.json.j2"


def test_template_that_renders_invalid_json(cfg: Any, tmp_path: Path) -> None:
    text = _with_template(cfg, tmp_path, '{\n  "model": {{ model }},\n  "messages": {{ messages }},\n}\n')
    p = cfg.one_error(text)
    assert (p.file, p.line, p.path) == ("mine.json.j2", 4, "providers.local.template")
    assert "does not render valid JSON" in p.message and p.snippet == "}"


def test_template_that_fails_to_render(cfg: Any, tmp_path: Path) -> None:
    text = _with_template(cfg, tmp_path, '{\n  "model": {{ model }},\n  "x": {{ nope.deeper }}\n}\n')
    p = cfg.one_error(text)
    assert (p.file, p.line) == ("mine.json.j2", 3) and "template error" in p.message


def test_template_with_a_syntax_error(cfg: Any, tmp_path: Path) -> None:
    text = _with_template(cfg, tmp_path, '{\n  "model": {{ model }\n}\n')
    p = cfg.one_error(text)
    assert p.file == "mine.json.j2" and p.line in (2, 3) and "template error" in p.message


# -- first contact: messages that point at the fix ------------------------------------------------

README_MINIMAL = """\
version: 1
providers:
  openai: {kind: openai, api_key: "${OPENAI_API_KEY}", models: [gpt-4o-mini]}
routes:
  - match: {}
    to: openai/gpt-4o-mini
"""


def test_the_builtin_deadline_cutting_builtin_retries_is_no_warning(tmp_path: Path) -> None:
    g = compile_text(README_MINIMAL, env={"OPENAI_API_KEY": "sk-x"}, base_dir=tmp_path)
    assert g.routes[0].worst_case > g.deadline  # medium: 110.5 s over the built-in 60 s
    assert g.warnings == ()  # so the README's minimal file passes engine check --strict
    written = README_MINIMAL.replace("version: 1\n", "version: 1\ndefaults: {deadline: 60s}\n")
    warned = compile_text(written, env={"OPENAI_API_KEY": "sk-x"}, base_dir=tmp_path).warnings
    assert [w.message for w in warned] == ["worst case 110.5s exceeds the deadline 1m"]


def test_a_misspelled_section_is_one_error(cfg: Any) -> None:
    text = cfg.replace("providers:\n", "provider:\n")
    err = cfg.one_error(text)
    assert (err.message, err.hint) == ("unknown top-level key 'provider'", "did you mean 'providers'?")
    assert err.line == cfg.line_of(text, "provider:")


def test_a_misspelled_section_is_still_checked(cfg: Any) -> None:
    text = cfg.replace("providers:\n", "provider:\n").replace("speed: quick", "speed: quik")
    errs = cfg.errors(text)
    assert [e.message for e in errs] == ["unknown top-level key 'provider'", "unknown speed 'quik'"]
    assert errs[1].line == cfg.line_of(text, "speed: quik")


def test_a_list_as_a_route_target_points_at_groups(cfg: Any) -> None:
    text = cfg.replace("    to: local\n", "    to: [local, chat]\n")
    err = cfg.one_error(text)
    assert err.message == "expected one target, got a list" and "groups:" in err.hint
    assert err.path == "routes[2].to"


@pytest.mark.parametrize("key", ["retries", "connect", "read", "backoff"])
def test_a_speed_key_in_a_provider_points_at_speeds(cfg: Any, key: str) -> None:
    text = cfg.replace("    speed: quick\n", f"    speed: quick\n    {key}: 2\n")
    err = cfg.one_error(text)
    assert err.message == f"unknown key '{key}'"
    assert "speeds:" in err.hint and "retry'?" not in err.hint


@pytest.mark.parametrize(
    ("vendor", "url"),
    [("groq", "https://api.groq.com/openai/v1"), ("Together", "https://api.together.xyz/v1")],
)
def test_an_openai_compatible_vendor_as_a_kind_says_what_to_write(cfg: Any, vendor: str, url: str) -> None:
    err = cfg.one_error(cfg.replace("    kind: ollama\n", f"    kind: {vendor}\n"))
    assert err.path == "providers.local.kind"
    assert "kind: openai" in err.hint and url in err.hint


@pytest.mark.parametrize(
    "cache", ["responses: {ttl: 0, max_temperature: 0.1}", "responses: {ttl: 0s}", "models: {ttl: 0}"]
)
def test_a_zero_ttl_is_an_error(cfg: Any, cache: str) -> None:
    text = cfg.replace("  responses: {ttl: 10m, max_temperature: 0.1}\n", f"  {cache}\n")
    if cache.startswith("models"):
        text = text.replace("  models: {ttl: 1h}\n", "")
    err = cfg.one_error(text)
    assert err.path.startswith("cache.") and err.path.endswith(".ttl")
    assert err.message.startswith("ttl must be more than 0")


def test_cost_is_rounded(good: RoutingGraph) -> None:
    price = good.providers["openai"].models["gpt-4o-mini"].price
    assert price is not None and repr(price.cost(Usage(5, 1))) == "1.35e-06"
