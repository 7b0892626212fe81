from __future__ import annotations

from pathlib import Path

import pytest

from dedup.errors import ConfigError
from dedup.settings import Settings, load_settings


def test_defaults_are_the_embedded_local_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEDUP_CONFIG", raising=False)
    settings = load_settings()
    assert settings.spark.master == "local[*]"
    assert settings.model_spec.alignment == "dlib-150"


def test_yaml_then_environment_then_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "dedup.yaml"
    config.write_text(
        "lake: /from/yaml\nspark:\n  master: spark://yaml:7077\n  shuffle_partitions: 8\n"
        "quality:\n  min_sharpness: 10\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("DEDUP_SPARK__MASTER", "spark://env:7077")
    settings = load_settings(config, overrides={"lake": "/from/flag"})
    assert settings.lake == "/from/flag"
    assert settings.spark.master == "spark://env:7077"
    assert settings.spark.shuffle_partitions == 8
    assert settings.quality.min_sharpness == 10
    assert settings.quality.min_brightness == Settings().quality.min_brightness


def test_config_file_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "dedup.yaml"
    config.write_text("lake: /via/env\n", encoding="utf-8")
    monkeypatch.setenv("DEDUP_CONFIG", str(config))
    assert load_settings().lake == "/via/env"


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("spark:\n  shuffle_partitions: 0\n", "spark.shuffle_partitions"),
        ("spark:\n  mastr: x\n", "spark.mastr"),
        ("model: no-such-model\n", "not in models"),
        ("- a list\n", "mapping"),
        ("spark: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_settings_name_the_field(tmp_path: Path, yaml_text: str, message: str) -> None:
    config = tmp_path / "dedup.yaml"
    config.write_text(yaml_text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_settings(config)


def test_missing_settings_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "absent.yaml")


def test_settings_round_trip_through_json(tmp_path: Path) -> None:
    settings = load_settings(overrides={"lake": str(tmp_path)})
    assert Settings.model_validate_json(settings.to_json()) == settings


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(ValueError):
        settings.spark.master = "elsewhere"  # type: ignore[misc]


def test_path_settings_are_made_absolute_where_they_are_validated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: the default ``lake = "lake"`` reached Spark as a table name and crashed
    ``dedup stage`` (`lake/enrollments` is not a valid name for tables)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DEDUP_CONFIG", raising=False)
    settings = load_settings(
        overrides={
            "gallery": "./g/../gallery",
            "spark": {"jar_dir": "jars"},
            "metrics": {"textfile_dir": "textfiles"},
        }
    )
    assert settings.lake == str(tmp_path / "lake")
    assert settings.gallery == str(tmp_path / "gallery")
    assert settings.spark.jar_dir == tmp_path / "jars"
    assert settings.metrics.textfile_dir == tmp_path / "textfiles"
    assert settings.spark.jar_cache.is_absolute()
    monkeypatch.setenv("DEDUP_LAKE", "from-env")
    assert load_settings().lake == str(tmp_path / "from-env")


def test_object_store_locations_are_kept_as_given() -> None:
    settings = load_settings(overrides={"lake": "s3://registry/lake", "gallery": "s3a://g/v"})
    assert (settings.lake, settings.gallery) == ("s3://registry/lake", "s3a://g/v")


def test_an_earliest_capture_without_offset_is_utc() -> None:
    import datetime as dt

    settings = load_settings(overrides={"manifest": {"earliest_capture": "2001-02-03T04:05"}})
    assert settings.manifest.earliest_capture == dt.datetime(2001, 2, 3, 4, 5, tzinfo=dt.UTC)


def test_only_a_leading_scheme_makes_a_uri() -> None:
    from dedup.contracts.locations import is_uri

    assert is_uri("s3://bucket/lake") and is_uri("file:///data/lake")
    assert not is_uri("/data/x://y") and not is_uri("lake") and not is_uri("://x")
