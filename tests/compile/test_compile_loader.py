"""engine.loader: positions, profile overlay, ${ENV} interpolation, and what YAML it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.compiler import compile_text
from engine.errors import ConfigError
from engine.loader import Loc, load, load_text, merge
from engine.values import Secret, format_duration, format_size, parse_duration, parse_size

TEXT = """\
version: 1
providers:
  openai:
    kind: openai
    models: [a, b]
routes:
  - to: openai
"""


def test_positions_of_keys_and_values() -> None:
    loaded = load_text(TEXT, "r.yaml")
    assert loaded.problems == []
    keys, values = loaded.locations.keys, loaded.locations.values
    assert keys[("providers", "openai", "kind")] == Loc("r.yaml", 4, 5, "    kind: openai")
    assert values[("providers", "openai", "kind")] == Loc("r.yaml", 4, 11, "    kind: openai")
    assert (
        values[("providers", "openai", "models", 1)].line,
        values[("providers", "openai", "models", 1)].col,
    ) == (5, 17)
    assert (keys[("routes", 0, "to")].line, keys[("routes", 0, "to")].col) == (7, 5)
    assert values[("routes", 0)].line == 7


def test_find_falls_back_to_the_longest_known_prefix() -> None:
    locs = load_text(TEXT, "r.yaml").locations
    loc = locs.find(("providers", "openai", "kind", "deeper", 3))
    assert loc is not None and (loc.line, loc.col) == (4, 11)
    key = locs.find(("providers", "openai", "kind"), key=True)
    assert key is not None and key.col == 5
    assert locs.find(("nowhere",)) is None


def test_plain_builtin_types_come_out() -> None:
    data = load_text("a: 1\nb: 1.5\nc: true\nd: ~\ne: text\nf: 2024-01-02\n").data
    assert data == {"a": 1, "b": 1.5, "c": True, "d": None, "e": "text", "f": "2024-01-02"}
    assert [type(v) for v in data.values()] == [int, float, bool, type(None), str, str]


def test_syntax_error_is_a_located_problem() -> None:
    loaded = load_text("version: 1\nproviders: [a\n", "x.yaml")
    assert loaded.data is None
    (p,) = loaded.problems
    assert p.file == "x.yaml" and p.line == 3 and p.message.startswith("YAML syntax:")


def test_duplicate_keys_are_rejected_at_the_second_one() -> None:
    (p,) = load_text("a: 1\nb: 2\na: 3\n").problems
    assert "duplicate key" in p.message and (p.line, p.col) == (3, 1)


@pytest.mark.parametrize(
    "text, line, col",
    [
        ("a: !!python/object/apply:os.system [ls]\n", 1, 4),
        ("a: !!python/name:os.system x\n", 1, 4),
        ("a: !foo {x: 1}\n", 1, 4),
        ("a:\n  - 1\n  - !env HOME\n", 3, 5),
        ("!foo\nb: 1\n", 1, 1),
    ],
)
def test_tags_are_rejected(text: str, line: int, col: int) -> None:
    loaded = load_text(text)
    msgs = [p for p in loaded.problems if "tag" in p.message]
    assert len(msgs) == 1 and "not allowed" in msgs[0].message
    assert (msgs[0].line, msgs[0].col) == (line, col)


@pytest.mark.parametrize("text", ["a: !!set {x}\n", "a: !!binary aGVsbG8=\n", "a: !!pairs [x: 1]\n"])
def test_non_plain_values_are_problems(text: str) -> None:
    (p,) = load_text(text).problems
    assert p.line == 1 and p.message.startswith("tag !!") and "is not allowed" in p.message


def test_omap_and_merge_keys_do_not_crash() -> None:
    (p,) = load_text("a: !!omap [x: 1, y: 2]\n").problems
    assert p.message == "tag !!omap is not allowed"
    data = load_text("a: &x {b: 1}\nc:\n  <<: *x\n  d: 2\n").data
    assert data["c"] == {"b": 1, "d": 2}


def test_non_string_keys_are_problems() -> None:
    (p,) = load_text("models:\n  4: {}\n").problems
    assert (p.line, p.col) == (2, 3) and "not a string" in p.message


def test_document_must_be_a_mapping() -> None:
    (p,) = load_text("- 1\n- 2\n").problems
    assert "must be a mapping" in p.message


def test_alias_bomb_is_capped_quickly() -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        prev, cur = chr(96 + i), chr(97 + i)
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 10) + "]")
    loaded = load_text("\n".join(lines) + "\n")  # uncapped: 10**9 nodes, it would never end
    assert loaded.data is None
    (p,) = loaded.problems
    assert "too large" in p.message


DEEP_MESSAGE = "the document nests more than 50 levels deep here"


def test_deep_nesting_is_a_located_problem_not_a_crash() -> None:
    (p,) = load_text("a: " + "[" * 60 + "]" * 60 + "\n", "r.yaml").problems
    assert (p.file, p.line, p.col, p.message) == ("r.yaml", 1, 53, DEEP_MESSAGE)
    assert p.snippet.startswith("a: [[[")  # a line too long to show has no caret display:
    (p,) = load_text("a: " + "[" * 6000 + "]" * 6000 + "\n", "r.yaml").problems
    assert (p.line, p.col, p.snippet) == (1, 53, "")


def test_nesting_the_scan_counts_once_is_located_by_the_converter() -> None:
    # a [k: v] pair is a mapping inside the sequence: 60 levels, of which the scan counts 31
    (p,) = load_text("a: " + "[a: " * 30 + "1" + "]" * 30 + "\n", "r.yaml").problems
    assert (p.line, p.col, p.message) == (1, 104, DEEP_MESSAGE)


def test_an_alias_inside_its_own_anchor_is_a_problem_not_a_crash() -> None:
    (p,) = load_text("a: &x [*x]\n").problems
    assert (p.line, p.col, p.message) == (1, 4, DEEP_MESSAGE)
    (p,) = load_text("a: &x {<<: *x}\n").problems
    assert p.message == "the document nests too deeply to read" and "alias" in p.hint


# ~40,000 levels overflow the C stack of ruamel's composer (a segfault, not an exception)
N = 40_000
TOO_DEEP = {
    "flow sequence": ("version: 1\nproviders: " + "[" * N + "]" * N + "\n", 2, 61),
    "flow mapping": ("version: 1\nproviders: " + "{a: " * N + "1" + "}" * N + "\n", 2, 208),
    "block sequence": ("version: 1\nroutes:\n  " + "- " * N + "to: x\n", 3, 101),
}


@pytest.mark.parametrize("name", TOO_DEEP)
def test_a_config_nested_40000_deep_is_refused_where_it_goes_too_deep(name: str) -> None:
    text, line, col = TOO_DEEP[name]
    with pytest.raises(ConfigError) as info:
        compile_text(text, file="deep.yaml", env={})
    (p,) = info.value.problems
    assert (p.file, p.line, p.col, p.message) == ("deep.yaml", line, col, DEEP_MESSAGE)
    assert "levels" in p.hint


# -- profiles ---------------------------------------------------------------------------------

BASE = """\
version: 1
cache: {backend: memory, responses: {ttl: 10m}}
providers:
  openai:
    kind: openai
    headers: {X-A: a, X-B: b}
    models: [a, b, c]
routes:
  - to: openai
"""


def _profile(tmp_path: Path, text: str, name: str = "p") -> Path:
    d = tmp_path / "profiles"
    d.mkdir(exist_ok=True)
    (d / f"{name}.yaml").write_text(text)
    return d


def test_profile_mappings_merge_lists_replace_null_removes(tmp_path: Path) -> None:
    pdir = _profile(
        tmp_path,
        """\
cache: {responses: null}
providers:
  openai:
    headers: {X-B: changed, X-C: new}
    models: [z]
  extra: {kind: ollama}
""",
    )
    loaded = load(BASE, "routes.yaml", profile="p", profiles_dir=pdir, env={})
    assert loaded.problems == []
    d = loaded.data
    assert d["cache"] == {"backend": "memory"}
    assert d["providers"]["openai"]["headers"] == {"X-A": "a", "X-B": "changed", "X-C": "new"}
    assert d["providers"]["openai"]["models"] == ["z"]
    assert d["providers"]["openai"]["kind"] == "openai"
    assert d["providers"]["extra"] == {"kind": "ollama"}
    assert loaded.files[0] == "routes.yaml" and loaded.files[1].endswith("p.yaml")


def test_profile_locations_point_at_the_profile_file(tmp_path: Path) -> None:
    pdir = _profile(tmp_path, "providers:\n  openai:\n    models: [z]\n    speed: fast\n")
    locs = load(BASE, "routes.yaml", profile="p", profiles_dir=pdir, env={}).locations
    models = locs.values[("providers", "openai", "models")]
    assert models.file.endswith("p.yaml") and (models.line, models.col) == (3, 13)
    assert locs.values[("providers", "openai", "models", 0)].file.endswith("p.yaml")
    speed = locs.keys[("providers", "openai", "speed")]
    assert speed.file.endswith("p.yaml") and speed.line == 4
    kind = locs.values[("providers", "openai", "kind")]  # untouched: still the base file
    assert kind.file == "routes.yaml" and kind.line == 5


def test_profile_null_removes_locations_too(tmp_path: Path) -> None:
    pdir = _profile(tmp_path, "providers:\n  openai:\n    headers: null\n")
    loaded = load(BASE, "routes.yaml", profile="p", profiles_dir=pdir, env={})
    assert "headers" not in loaded.data["providers"]["openai"]
    assert not any(p[:3] == ("providers", "openai", "headers") for p in loaded.locations.values)


def test_missing_profile_lists_the_available_ones(tmp_path: Path) -> None:
    pdir = _profile(tmp_path, "{}\n", "ci")
    (p,) = load(BASE, profile="nope", profiles_dir=pdir, env={}).problems
    assert "profile 'nope' not found" in p.message and "ci" in p.hint


def test_profile_with_a_syntax_error_is_located_in_the_profile(tmp_path: Path) -> None:
    pdir = _profile(tmp_path, "providers:\n  openai: {kind: [\n")
    (p,) = load(BASE, profile="p", profiles_dir=pdir, env={}).problems
    assert p.file.endswith("p.yaml") and p.line >= 2


def test_merge_of_plain_loaded_values() -> None:
    a = load_text("x: {y: 1, z: [1, 2]}\n", "a.yaml")
    b = load_text("x: {z: [3], w: null, v: 2}\n", "b.yaml")
    assert merge(a, b).data == {"x": {"y": 1, "z": [3], "v": 2}}


# -- ${ENV} -----------------------------------------------------------------------------------


def _env(text: str, env: dict[str, str]) -> tuple[object, list[str]]:
    loaded = load(f"v: {text}\n", env=env)
    return loaded.data["v"], [p.message for p in loaded.problems]


def test_env_reference_becomes_a_secret() -> None:
    value, problems = _env("${KEY}", {"KEY": "s3cr3t"})
    assert problems == [] and isinstance(value, Secret) and value.reveal() == "s3cr3t"
    assert "s3cr3t" not in repr(value) and str(value) == "***"


def test_env_inside_a_longer_string() -> None:
    value, _ = _env('"Bearer ${KEY}!"', {"KEY": "abc"})
    assert isinstance(value, Secret) and value.reveal() == "Bearer abc!"


def test_env_default_used_when_unset_and_ignored_when_set() -> None:
    assert _env("${NOPE:-fallback}", {})[0].reveal() == "fallback"  # type: ignore[union-attr]
    assert _env("${K:-fallback}", {"K": "set"})[0].reveal() == "set"  # type: ignore[union-attr]
    assert _env('"${K:-}"', {})[0].reveal() == ""  # type: ignore[union-attr]


def test_unset_env_is_empty_and_recorded() -> None:
    loaded = load("v: ${MISSING}\nw: ${PRESENT}\n", env={"PRESENT": "x"})
    assert loaded.problems == []
    assert loaded.data["v"].reveal() == ""
    assert loaded.env_used == {"MISSING": False, "PRESENT": True}


def test_double_dollar_escapes() -> None:
    value, problems = _env('"cost $${NOT_A_VAR}"', {"NOT_A_VAR": "leak"})
    assert problems == [] and value == "cost ${NOT_A_VAR}" and not isinstance(value, Secret)


@pytest.mark.parametrize("text", ["${1BAD}", "${A-B}", "${}", "'${ NAME }'"])
def test_bad_reference_is_a_located_problem(text: str) -> None:
    loaded = load(f"a: 1\nv: {text}\n", env={})
    (p,) = loaded.problems
    assert "bad variable reference" in p.message and p.line == 2 and p.path == "v"


def test_unclosed_reference_is_a_problem() -> None:
    loaded = load("v: ${NAME\n", env={"NAME": "x"})
    (p,) = loaded.problems
    assert "unclosed" in p.message and p.line == 1


def test_env_in_keys_and_lists() -> None:
    loaded = load("l: [a, '${X}']\n", env={"X": "y"})
    assert loaded.data["l"][0] == "a" and loaded.data["l"][1].reveal() == "y"


# -- durations --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("250ms", 0.25),
        ("5s", 5.0),
        ("1.5s", 1.5),
        ("10m", 600.0),
        ("1h", 3600.0),
        (" 2s ", 2.0),
        (3, 3.0),
        (0.5, 0.5),
        ("7", 7.0),
        (".5s", 0.5),
        (0, 0.0),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["-1s", -1, "5 seconds", "1d", "", "ms", True, None, [1], float("nan"), float("inf"), "1.2.3s"]
)
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    "seconds, text",
    [
        (0.25, "250ms"),
        (5, "5s"),
        (1.5, "1.5s"),
        (600, "10m"),
        (3600, "1h"),
        (0, "0s"),
        (90, "90s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)


# -- sizes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, size",
    [
        ("16MiB", 16 * 1024**2),
        ("512KB", 512_000),
        ("1.5MB", 1_500_000),
        ("1GiB", 1024**3),
        ("100B", 100),
        ("32 mib", 32 * 1024**2),
        (" 2kib ", 2048),
        (4096, 4096),
        ("7", 7),
        (1.0, 1),
    ],
)
def test_sizes(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    "text",
    [
        "-1MB",
        -1,
        0,
        "0B",
        "0.1B",
        "5 megs",
        "1TB",
        "",
        "MB",
        True,
        None,
        [1],
        float("nan"),
        float("inf"),
        "1.2.3MB",
    ],
)
def test_bad_sizes(text: object) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(text)


@pytest.mark.parametrize(
    "size, text",
    [
        (32 * 1024**2, "32MiB"),
        (512_000, "512KB"),
        (1_500_000, "1500KB"),
        (1024**3, "1GiB"),
        (1000, "1KB"),
        (100, "100B"),
        (1536, "1536B"),
    ],
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("text", "line", "words", "jargon"),
    [
        (
            "version: 1\nproviders:\n  a: {kind: openai}\n routes:\n  - to: a\n",
            4,
            "indentation does not fit",
            "<block end>",
        ),
        (
            "version: 1\nproviders:\n  a: {kind: openai}\nroutes:\n  - match: {model: *}\n    to: a\n",
            5,
            "'*' at the start of a value is a YAML alias",
            "alphabetic or numeric",
        ),
        (
            "version: 1\nproviders:\n  a: {kind: openai}\nroutes:\n  - match: {model: *-mini}\n    to: a\n",
            5,
            "'*' at the start of a value is a YAML alias",
            "undefined alias",
        ),
        (
            "version: 1\nproviders:\n  a: {kind: openai, api_key: a: b}\nroutes:\n  - to: a\n",
            3,
            "an item goes on past where it should end",
            "expected ','",
        ),
    ],
)
def test_yaml_syntax_errors_speak_of_lines_and_quotes(text: str, line: int, words: str, jargon: str) -> None:
    from engine.loader import load_text

    [problem] = load_text(text).problems
    assert problem.line == line and words in problem.message
    assert jargon not in problem.message and jargon not in problem.hint
    assert problem.hint
