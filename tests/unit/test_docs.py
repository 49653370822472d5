"""docs/: the generated parts match the code, and every key, field and type is described."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
import typing
from pathlib import Path
from typing import Annotated

import msgspec
import msgspec.inspect as mi
import pytest

from tests.unit.test_layering import imported
from tools import docsgen
from tradebus import config
from tradebus.schemas import events as ev

REPO = Path(__file__).resolve().parents[2]


def test_every_config_key_has_a_description() -> None:
    """A key added to a built-in config struct without a description fails here, by name."""
    missing = docsgen.undocumented_config()
    assert missing == [], f"give these fields msgspec.Meta(description=...): {missing}"


class _Bare(config.SinkBase, tag="bare", frozen=True, kw_only=True):
    described: Annotated[int, msgspec.Meta(ge=0, description="Has one.")] = 0
    bare: int = 0


def test_a_missing_description_is_named_exactly() -> None:
    """Without its description, the key itself is what the check and `make docs` report."""
    sections: docsgen.Sections = {"sources": docsgen.builtin_configs("sources"), "sinks": [_Bare]}
    assert docsgen.undocumented_config(sections) == ["sinks.bare.bare"]
    with pytest.raises(SystemExit, match=r"no description for: sinks\.bare\.bare \("):
        docsgen.check_documented(sections)


def test_descriptions_come_from_the_fields() -> None:
    """The page's meaning of a key is its field's description, beside its other constraints."""
    described = _field(_Bare, "described")
    assert docsgen.description(described) == "Has one."
    assert docsgen.type_text(described.type) == "integer, ≥ 0"
    assert docsgen.description(_field(_Bare, "bare")) == ""
    meaning = docsgen.description(_field(config.TtmtSource, "read_timeout"))
    assert meaning.startswith("Seconds without a byte")
    page = (REPO / "docs" / "configuration.md").read_text("utf-8")
    assert f"| `read_timeout` | number, > 0 | `330.0` | {meaning} |" in page


def test_an_installed_plugins_keys_are_listed_from_its_fields() -> None:
    """The example plugin (installed in the venv) gets its own table: its own keys only, each
    with the description its struct gives; no built-in is listed among the plugins."""
    from tradebus_sink_sqlite import SqliteSinkConfig

    rendered = docsgen.render_plugins()
    assert '### `[[sinks]]` `type = "sqlite"` (package `tradebus-sink-sqlite`)' in rendered
    shared = {f.name for f in msgspec.structs.fields(config.SinkBase)}
    own = [f.name for f in msgspec.structs.fields(SqliteSinkConfig) if f.name not in shared]
    assert own
    for name in own:
        meaning = docsgen.description(_field(SqliteSinkConfig, name))
        assert meaning
        assert re.search(rf"^\| `{name}` \| .* \| {re.escape(meaning)} \|$", rendered, re.M)
    assert "| `name` |" not in rendered
    assert not re.search(r'type = "(stdout|file|webhook|nats|ttmt)"', rendered)


def _field(cls: type, name: str) -> mi.Field:
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    (found,) = [f for f in info.fields if f.name == name]
    return found


def test_every_event_type_and_field_has_a_meaning() -> None:
    """Every type, envelope field and data field of the event model is described."""
    assert docsgen.undocumented_types() == []
    assert docsgen.undocumented_fields() == []
    assert set(docsgen.EVENT_DOCS) == set(ev.EVENT_TYPES)
    assert set(docsgen.FIELD_DOCS) == set(docsgen.event_fields())


def test_generated_docs_are_fresh() -> None:
    """docs/*.md hold what `make docs` generates now."""
    stale = [str(p.relative_to(REPO)) for p in docsgen.stale()]
    assert stale == [], f"{stale} stale: run `make docs` and commit the result"


def test_every_generated_region_is_in_a_doc() -> None:
    """Each renderer fills a region that exists (a lost marker would hide a table)."""
    text = "".join(p.read_text(encoding="utf-8") for p in (REPO / "docs").glob("*.md"))
    names = [m.group("name") for m in docsgen.REGION.finditer(text)]
    assert sorted(names) == sorted(docsgen.RENDERERS)


def test_fill_replaces_region_bodies_only() -> None:
    """Prose around a region is kept; the body between the markers is replaced."""
    text = "a\n<!-- generated:x -->\nold\n<!-- /generated:x -->\nb\n"
    assert docsgen.fill(text, {"x": "new"}) == (
        "a\n<!-- generated:x -->\nnew\n<!-- /generated:x -->\nb\n"
    )


def test_examples_are_canonical_events_of_their_type() -> None:
    """Each example line decodes as an Event of the type it illustrates, with fixed stamps."""
    lines = docsgen.example_lines()
    assert list(lines) == list(ev.EVENT_TYPES)
    seqs = []
    for tag, line in lines.items():
        event = ev.decoder.decode(line)
        assert ev.event_type(event) == tag
        assert event.received == docsgen.RECEIVED
        assert event.time <= event.received
        seqs.append(event.seq)
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)
    assert docsgen.example_lines() == lines


def test_examples_cover_every_provider() -> None:
    """The examples come from all four adapters, not one."""
    lines = [*docsgen.example_lines().values(), docsgen.journal_gap_line()]
    providers = {ev.decoder.decode(line).provider for line in lines}
    assert providers == {*ev.BUILTIN_PROVIDERS, ev.TRADEBUS}


def _used_keys(data: dict[str, typing.Any]) -> list[str]:
    """The CONFIG_DOCS keys a config file's tables use (``*_file`` secrets as their field)."""
    keys = [f"daemon.{k}" for k in data.get("daemon", {})]
    for section in ("sources", "sinks"):
        for table in data.get(section, []):
            tag = table["type"]
            for key in table:
                if key == "type":
                    continue
                field = key.removesuffix("_file") if key.endswith("_file") else key
                keys.append(f"{section}.{tag}.{field}")
    return keys


def _known_keys() -> set[str]:
    known = set()
    for key, _ in docsgen.config_keys():
        section, *rest = key.split(".")
        if len(rest) == 2:
            known.add(key)
            continue
        if section == "daemon":
            known.add(key)
            continue
        for cls in docsgen.builtin_configs(section):
            known.add(f"{section}.{cls.__struct_config__.tag}.{rest[0]}")
    return known


def test_production_example_uses_only_existing_keys() -> None:
    """Every key in config/production.example.toml is one the structs (and this page) know."""
    data = tomllib.loads((REPO / "config" / "production.example.toml").read_text("utf-8"))
    unknown = [k for k in _used_keys(data) if k not in _known_keys()]
    assert unknown == [], f"config/production.example.toml uses keys that do not exist: {unknown}"


# Types the production example does not show yet: each one is a table to add there.
NOT_IN_PRODUCTION_EXAMPLE: set[str] = set()


def test_production_example_shows_every_source_and_sink_type() -> None:
    """Each source and sink type has a table in the production example (or is listed above)."""
    data = tomllib.loads((REPO / "config" / "production.example.toml").read_text("utf-8"))
    for section in ("sources", "sinks"):
        shown = {table["type"] for table in data[section]}
        tags = {str(c.__struct_config__.tag) for c in docsgen.builtin_configs(section)}
        missing = tags - shown - NOT_IN_PRODUCTION_EXAMPLE
        assert missing == set(), f"production.example.toml has no [[{section}]] for these"
    assert NOT_IN_PRODUCTION_EXAMPLE.isdisjoint(t["type"] for t in data["sinks"])


def test_used_keys_catches_a_misspelt_key() -> None:
    """The walk above would name a misspelt key (so the example test can fail)."""
    data = {"daemon": {"drain_timout": 1}, "sources": [{"type": "ttmt", "api_key_file": "k"}]}
    used = _used_keys(data)
    assert used == ["daemon.drain_timout", "sources.ttmt.api_key"]
    assert [k for k in used if k not in _known_keys()] == ["daemon.drain_timout"]


def test_defaults_in_the_page_are_the_structs_defaults() -> None:
    """The default column shows each key's real default (spot-check of the rendering)."""
    page = (REPO / "docs" / "configuration.md").read_text("utf-8")
    assert "| `drain_timeout` | number, > 0 | `15.0` |" in page
    assert "| `api_key` | secret string; or `api_key_file` | required |" in page
    default = msgspec.structs.fields(config.FileSinkConfig)
    (max_bytes,) = [f for f in default if f.name == "max_bytes"]
    assert f"| `max_bytes` | integer, ≥ 0 | `{max_bytes.default}` (256 MiB) |" in page
    assert "| `give_up_after` | number, > 0 | `86400.0` (24 h) |" in page


# --- ARCHITECTURE.md's invariants that a machine can check ----------------------------------

SRC = REPO / "src" / "tradebus"
IO = frozenset({"asyncio", "aiohttp", "websockets", "uvloop"})


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports (top-level and lazy), as dotted names."""
    package = ".".join(("tradebus", *path.relative_to(SRC).parent.parts))
    return imported(ast.parse(path.read_text("utf-8")), package)


def _sans_io_modules() -> list[Path]:
    fixed = ["sse.py", "backoff.py", "times.py", "journal/records.py", "schemas/events.py"]
    fixed += ["recording/format.py", "recording/redact.py"]
    found = [SRC / name for name in fixed]
    for pattern in ("wire.py", "normalize.py", "session.py", "reconcile.py"):
        found += sorted((SRC / "adapters").glob(f"*/{pattern}"))
    return found


def test_sans_io_modules_import_no_io_library() -> None:
    """Decoders, normalizers and state machines never import asyncio, aiohttp or websockets."""
    offenders = {
        str(path.relative_to(SRC)): sorted(n for n in _imports(path) if n.split(".")[0] in IO)
        for path in _sans_io_modules()
    }
    assert len(offenders) >= 15
    assert {k: v for k, v in offenders.items() if v} == {}


def test_sources_never_import_the_bus_or_a_sink() -> None:
    """Nothing under adapters/ knows the bus or the sinks: it sees only SourceContext."""
    offenders = {
        str(path.relative_to(SRC)): sorted(
            n for n in _imports(path) if n.startswith(("tradebus.bus", "tradebus.sinks"))
        )
        for path in (SRC / "adapters").rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_import_walk_sees_lazy_and_from_imports() -> None:
    """The walk the invariant tests use finds what a module really imports."""
    assert "asyncio" in _imports(SRC / "adapters" / "live.py")
    assert "tradebus.adapters.base.SourceContext" in _imports(
        SRC / "adapters" / "ttmt" / "adapter.py"
    )


# --- the prose pages point at things that exist ---------------------------------------------

PAGES = [
    "README.md",
    "ARCHITECTURE.md",
    "CONTRIBUTING.md",
    "CHANGELOG.md",
    "docs/events.md",
    "docs/running.md",
    "docs/sinks.md",
    "docs/durability.md",
    "docs/operations.md",
    "docs/recording.md",
]
_LINK = re.compile(r"\]\(([^)#:]+)(?:#[^)]*)?\)")
_PATH = re.compile(r"`((?:src|tests|tools|config|docs|benchmarks|systemd)/[A-Za-z0-9_./]+)`")


@pytest.mark.parametrize("page", PAGES)
def test_relative_links_and_named_paths_exist(page: str) -> None:
    """Every relative link, and every repository path in backticks, names a real file."""
    path = REPO / page
    text = path.read_text("utf-8")
    links = [path.parent / m.group(1) for m in _LINK.finditer(text)]
    # ``foo`` is the placeholder of the how-to sections: a file to create, not one that exists.
    named = [REPO / m.group(1).rstrip("/.") for m in _PATH.finditer(text) if "foo" not in m[1]]
    missing = [str(p.relative_to(REPO)) for p in links + named if not p.exists()]
    assert missing == []


def test_readme_points_to_the_docs() -> None:
    """The README's development section and its event section link the pages of this repo."""
    readme = (REPO / "README.md").read_text("utf-8")
    development = readme.split("## Development", 1)[1]
    for page in ("ARCHITECTURE.md", "CONTRIBUTING.md", "docs/events.md", "CHANGELOG.md"):
        assert f"]({page})" in development
    event_part = readme.split("## The canonical event", 1)[1].split("\n## ", 1)[0]
    assert "](docs/events.md)" in event_part


def test_type_words_cover_what_config_keys_may_use() -> None:
    """Types a new key may bring (tables, optional numbers, enums of strings) read as words."""
    assert docsgen.type_text(mi.type_info(dict[str, str])) == "table of string to string"
    assert docsgen.type_text(mi.type_info(int | None)) == "integer or null"
    assert docsgen.type_text(mi.type_info(typing.Literal["a", "b"])) == '`"a"` \\| `"b"`'
    assert docsgen.type_text(mi.type_info(list[float])) == "list of number"


def test_configuration_page_names_every_secret_key() -> None:
    """The page's list of keys that take a ``_file`` form is config.SECRET_FIELDS."""
    page = (REPO / "docs" / "configuration.md").read_text("utf-8")
    line = next(x for x in page.splitlines() if x.startswith("- A secret key ("))
    named = set(re.findall(r"`([a-z_]+)`", line.split(")", 1)[0]))
    assert named == config.SECRET_FIELDS


# --- the README: a first screen, then links ---------------------------------------------------

SCREEN = 40  # lines of a terminal or a repository page's first view
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.M | re.S)


def _readme() -> str:
    return (REPO / "README.md").read_text("utf-8")


def _blocks(text: str, lang: str) -> list[str]:
    return [m.group(2) for m in _FENCE.finditer(text) if m.group(1) == lang]


def test_the_first_screen_says_what_it_is_shows_the_flow_and_the_two_commands() -> None:
    """Within the first screen: what tradebus is for, one picture of the flow (sources to
    sinks through the journal), and the quick start's two commands."""
    screen = "\n".join(_readme().splitlines()[:SCREEN])
    assert "one canonical event model" in screen
    (picture,) = _blocks(screen, "text")
    for part in ("TTMT", "MT4 bridge", "normalize", "journal", "stdout", "NATS JetStream"):
        assert part in picture
    assert "## Quick start" in screen
    assert "make demo" in _blocks(screen, "sh")[0]


def test_the_quick_start_is_exactly_the_two_commands() -> None:
    """The quick start block holds `make demo` and `make test`, nothing else."""
    quick = _readme().split("## Quick start", 1)[1]
    commands = [line.split("#")[0].strip() for line in _blocks(quick, "sh")[0].splitlines()]
    assert commands == ["make demo", "make test"]


def test_the_readme_says_where_the_command_is() -> None:
    """After `make demo` the command is .venv/bin/tradebus (not on the PATH): the first screen
    says so, and says how to put it there; the path is the one the venv really has."""
    screen = "\n".join(_readme().splitlines()[:SCREEN])
    assert "`.venv/bin/tradebus`" in screen
    assert "`. .venv/bin/activate`" in screen
    assert (Path(sys.prefix) / "bin" / "tradebus").exists()


def test_the_readme_is_a_first_screen_and_links_not_a_reference() -> None:
    """The reference parts live in docs/ pages the README links; it holds no sink's keys."""
    readme = _readme()
    assert len(readme.splitlines()) <= 80
    for gone in ("### Webhook sink", "## Operations", "## Install as a service", "[[sinks]]"):
        assert gone not in readme
    for page in ("running", "sinks", "durability", "operations", "configuration"):
        assert f"](docs/{page}.md)" in readme


# How the README's intro names each sink type.
SINK_WORDS = {"stdout": "stdout", "file": "JSONL files", "webhook": "webhooks", "nats": "NATS"}


def test_the_intro_names_every_sink_there_is() -> None:
    """The intro lists each sink type the config knows (no "more to come")."""
    intro = _readme().split("```", 1)[0]
    tags = {str(c.__struct_config__.tag) for c in docsgen.builtin_configs("sinks")}
    assert set(SINK_WORDS) == tags
    assert [w for w in SINK_WORDS.values() if w not in " ".join(intro.split())] == []
    assert "to come" not in intro


def test_trader_ws_back_fill_is_promised_only_with_its_condition() -> None:
    """Where a page says Trader WS back-fills, the same paragraph says it needs an account and
    what happens without one (`executions_not_backfilled`)."""
    found = 0
    for page in PAGES:
        for paragraph in (REPO / page).read_text("utf-8").split("\n\n"):
            flat = " ".join(paragraph.split())
            if "Trader WS back-fills" in flat:
                found += 1
                assert "`account_id`" in flat
                assert "`executions_not_backfilled`" in flat
    assert found >= 1


def test_the_readme_says_how_to_reload_and_how_to_import_the_dashboard() -> None:
    """A section on changing the configuration without a restart, and one on importing the
    dashboard and the alert rules, naming files that exist."""
    readme = _readme()
    reload_part = readme.split("## Changing the configuration", 1)[1].split("\n## ", 1)[0]
    assert "tradebus reload" in reload_part
    assert "systemctl reload" in reload_part
    deploy = readme.split("## Dashboard and alerts", 1)[1].split("\n## ", 1)[0]
    for path in ("deploy/grafana/tradebus.json", "deploy/prometheus/tradebus-rules.yml"):
        assert f"`{path}`" in deploy
        assert (REPO / path).is_file()
    assert "rule_files:" in deploy
