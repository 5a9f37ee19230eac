"""Where the models beside the primary come from: the source grammar of --shadow and --canary (and
their environment variables), refused with the reason when it is not followed."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelops.cli import main
from modelops.serve import sources
from modelops.serve.config import ConfigInvalid, ServeConfig, build
from modelops.serve.routing import CanaryRouter, bucket

SHA = "ab" * 32


def test_a_source_is_a_registry_ref_or_a_bundle_directory_with_its_digest() -> None:
    assert sources.parse("staging") == sources.Source(ref="staging")
    assert sources.parse("churn@v1.3.0") == sources.Source(ref="churn@v1.3.0")
    assert sources.parse(f" build/bundle@{SHA} ") == sources.Source(
        directory=Path("build/bundle"), sha256=SHA
    )
    # A directory whose name has an @ in it still ends in the digest.
    assert sources.parse(f"/srv/a@b/bundle@{SHA}").directory == Path("/srv/a@b/bundle")
    assert str(sources.parse(f"/srv/bundle@{SHA}")) == f"/srv/bundle@{SHA}"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "not a registry ref"),
        ("two words", "not a registry ref"),
        ("a,b", "not a registry ref"),
        (f"bundle@{SHA.upper()}", "64 lower-case hex digits"),
        (f"bundle@{SHA[:40]}", "64 lower-case hex digits"),
    ],
)
def test_a_source_that_is_neither_form_is_refused_with_the_grammar(text: str, says: str) -> None:
    with pytest.raises(sources.SourceInvalid, match=says):
        sources.parse(text)


def test_a_canary_names_its_share_in_percent() -> None:
    assert sources.parse_canary("staging:5%") == sources.Canary(sources.Source(ref="staging"), 5.0)
    assert sources.parse_canary(f"b@{SHA}:0.25%").percent == 0.25
    assert sources.parse_canary("staging:100").percent == 100.0
    assert sources.parse_canary("staging:0%").percent == 0.0
    assert sources.canary_text(sources.Source(ref="staging"), 2.5) == "staging:2.5%"
    for bad, says in (
        ("staging", "SOURCE:PERCENT%"),
        ("staging:5.125%", "SOURCE:PERCENT%"),
        ("staging:-1%", "SOURCE:PERCENT%"),
        ("staging:101%", "0 to 100 percent"),
    ):
        with pytest.raises(sources.SourceInvalid, match=says):
            sources.parse_canary(bad)


def test_shares_may_leave_nothing_to_the_primary_but_not_less() -> None:
    sources.check_total({"a": 60, "b": 40})
    with pytest.raises(sources.SourceInvalid, match=r"add up to 100.01%"):
        sources.check_total({"a": 60, "b": 40.01})
    assert sources.buckets(0.01) == 1 and sources.buckets(100) == sources.BUCKETS


def test_config_takes_repeated_options_or_comma_separated_variables() -> None:
    given = build({"shadow": ["staging", f"b@{SHA}"], "canary": ["churn@v1.3.0:5%"]}, {})
    assert given.shadow == ("staging", f"b@{SHA}") and given.canary == ("churn@v1.3.0:5%",)
    env = {"MODELOPS_SERVE_SHADOW": f"staging, b@{SHA},", "MODELOPS_SERVE_CANARY": "prod:1%"}
    from_env = build({}, env)
    assert from_env.shadow == ("staging", f"b@{SHA}") and from_env.canary == ("prod:1%",)
    assert build({"shadow": ["x"]}, env).shadow == ("x",)  # the option wins
    assert ServeConfig().shadow == () and ServeConfig().canary == ()


@pytest.mark.parametrize(
    ("options", "environ", "says"),
    [
        ({"shadow": ["no good"]}, {}, "--shadow: 'no good': not a registry ref"),
        ({}, {"MODELOPS_SERVE_CANARY": "prod"}, "MODELOPS_SERVE_CANARY: 'prod': a canary is"),
        ({"canary": ["a:60%", "b:50%"]}, {}, "--canary: canary shares add up to 110%"),
        ({"admin_token": "short"}, {}, "--admin-token"),
    ],
)
def test_config_names_the_option_or_variable_of_a_bad_source(
    options: dict[str, object], environ: dict[str, str], says: str
) -> None:
    with pytest.raises(ConfigInvalid) as info:
        build(options, environ)
    assert str(info.value).startswith(says), str(info.value)


def test_routing_keys_land_in_the_same_bucket_in_every_process() -> None:
    # blake2b, not Python's hash(): the same key is routed alike by every worker and after restarts.
    assert bucket(b"customer-42") == bucket(b"customer-42")
    assert bucket(b"customer-42") == 1354
    router = CanaryRouter(["v1.1.0", "v1.2.0"], {"v1.1.0": 10, "v1.2.0": 5})
    keys = [f"k{i}".encode() for i in range(20_000)]
    chosen = [router.choose(k) for k in keys]
    assert all(router.choose(k) == c for k, c in zip(keys, chosen, strict=True))
    # Raising a share moves keys from the primary to that canary only: nobody changes canary.
    router.change({"v1.1.0": 10, "v1.2.0": 20})
    moved = [(c, router.choose(k)) for k, c in zip(keys, chosen, strict=True)]
    assert {(a, b) for a, b in moved if a != b} == {(-1, 1)}


def test_serve_takes_repeated_shadow_and_canary_options_and_refuses_a_bad_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    shown = capsys.readouterr().out
    assert "--shadow SOURCE" in shown and "--canary SOURCE:PERCENT%" in shown
    assert "MODELOPS_SERVE_ADMIN_TOKEN" in shown
    code = main(
        ["serve", "--bundle", str(tmp_path), "--canary", f"a@{SHA}:70%", "--canary", "b:31%"]
    )
    assert code == 2
    assert "--canary: canary shares add up to 101%" in capsys.readouterr().err
