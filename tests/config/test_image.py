"""ImageSettings: coercion, validation, layering, SDK requirement, redaction."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from kitaru._version import __version__
from kitaru.config import (
    IMAGE_FIELDS,
    ImageSettings,
    configure,
    frozen_image,
    requirements_include_kitaru,
    resolve_image,
    resolve_settings,
)
from kitaru.errors import KitaruUsageError

SDK = f"kitaru=={__version__}"

# --------------------------------------------------------------------------------------
# Coercion
# --------------------------------------------------------------------------------------


def test_coerce_none() -> None:
    assert ImageSettings.coerce(None) is None


def test_coerce_string_is_base_image() -> None:
    assert ImageSettings.coerce("python:3.12-slim") == ImageSettings(base_image="python:3.12-slim")


def test_coerce_mapping() -> None:
    image = ImageSettings.coerce(
        {
            "base_image": "b",
            "requirements": ["httpx", "pydantic>=2"],
            "environment": {"LOG_LEVEL": "INFO"},
            "apt_packages": ("git",),
            "replicate_local_python_environment": False,
            "dockerfile": "Dockerfile",
            "secret_environment_from": ["openai-creds"],
        }
    )
    assert image == ImageSettings(
        base_image="b",
        requirements=("httpx", "pydantic>=2"),
        environment={"LOG_LEVEL": "INFO"},
        apt_packages=("git",),
        replicate_local_python_environment=False,
        dockerfile="Dockerfile",
        secret_environment_from=("openai-creds",),
    )


def test_coerce_object_is_returned_as_is() -> None:
    image = ImageSettings(base_image="b")
    assert ImageSettings.coerce(image) is image


def test_parent_image_alias() -> None:
    assert ImageSettings.coerce({"parent_image": "b"}) == ImageSettings(base_image="b")
    with pytest.raises(KitaruUsageError, match="not both"):
        ImageSettings.coerce({"parent_image": "b", "base_image": "c"})


def test_unknown_key_names_it_and_lists_valid_keys() -> None:
    with pytest.raises(KitaruUsageError) as excinfo:
        ImageSettings.coerce({"base_image": "b", "pip": ["x"]})
    message = str(excinfo.value)
    assert "'pip'" in message
    for name in ("base_image", "requirements", "environment", "apt_packages", "dockerfile"):
        assert name in message


@pytest.mark.parametrize(
    ("value", "field", "expected"),
    [
        ({"requirements": 5}, "requirements", "list of non-empty strings"),
        ({"requirements": "pandas"}, "requirements", "list of non-empty strings"),
        ({"requirements": ["ok", 3]}, "requirements", "list of non-empty strings"),
        ({"requirements": [""]}, "requirements", "list of non-empty strings"),
        ({"apt_packages": {"git": 1}}, "apt_packages", "list of non-empty strings"),
        ({"environment": ["A=1"]}, "environment", "mapping"),
        ({"environment": {"A": 1}}, "environment", "must be a string"),
        ({"environment": {"": "x"}}, "environment", "non-empty string keys"),
        ({"base_image": 3}, "base_image", "non-empty string"),
        ({"base_image": "  "}, "base_image", "non-empty string"),
        ({"dockerfile": ["Dockerfile"]}, "dockerfile", "non-empty string"),
        ({"replicate_local_python_environment": "yes"}, "replicate_local", "True or False"),
    ],
)
def test_wrong_types_name_field_and_expected_type(
    value: dict[str, Any], field: str, expected: str
) -> None:
    with pytest.raises(KitaruUsageError) as excinfo:
        ImageSettings.coerce(value, where="in @flow(...) for 'agent'")
    message = str(excinfo.value)
    assert field in message
    assert expected in message
    assert message.endswith("(in @flow(...) for 'agent').")


@pytest.mark.parametrize("value", [3, 1.5, ["python"], object()])
def test_unsupported_value_types(value: object) -> None:
    with pytest.raises(KitaruUsageError, match="image must be a base image string"):
        ImageSettings.coerce(value)


def test_empty_string_is_rejected() -> None:
    with pytest.raises(KitaruUsageError, match="non-empty base image"):
        ImageSettings.coerce("")


def test_direct_construction_validates() -> None:
    with pytest.raises(KitaruUsageError, match="requirements"):
        ImageSettings(requirements=5)  # type: ignore[arg-type]


def test_immutable_and_detached_from_caller_data() -> None:
    requirements = ["httpx"]
    environment = {"A": "1"}
    image = ImageSettings(requirements=requirements, environment=environment)
    requirements.append("evil")
    environment["B"] = "2"
    assert image.requirements == ("httpx",)
    assert image.environment == {"A": "1"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        image.base_image = "x"  # type: ignore[misc]
    assert hash(image) == hash(ImageSettings(requirements=("httpx",), environment={"A": "1"}))


def test_strings_are_stripped() -> None:
    assert ImageSettings(base_image=" b ", requirements=[" x "]) == ImageSettings(
        base_image="b", requirements=("x",)
    )


def test_to_dict_omits_unset_and_round_trips() -> None:
    image = ImageSettings(base_image="b", requirements=["x"], environment={"A": "1"})
    data = image.to_dict()
    assert data == {"base_image": "b", "requirements": ["x"], "environment": {"A": "1"}}
    assert ImageSettings.coerce(data) == image
    assert ImageSettings().to_dict() == {}
    assert ImageSettings().is_empty()
    assert set(IMAGE_FIELDS) >= {
        "base_image",
        "requirements",
        "environment",
        "apt_packages",
        "replicate_local_python_environment",
        "dockerfile",
    }


# --------------------------------------------------------------------------------------
# Layering
# --------------------------------------------------------------------------------------


def test_resolve_image_field_by_field() -> None:
    high = ImageSettings(base_image="from-decorator")
    low = ImageSettings(base_image="from-configure", environment={"A": "1"}, apt_packages=["git"])
    merged = resolve_image(high, low)
    assert merged == ImageSettings(
        base_image="from-decorator", environment={"A": "1"}, apt_packages=("git",)
    )


def test_resolve_image_higher_list_replaces_lower_list() -> None:
    merged = resolve_image(ImageSettings(requirements=["a"]), ImageSettings(requirements=["b"]))
    assert merged is not None
    assert merged.requirements == ("a",)


def test_resolve_image_merges_environment_per_variable() -> None:
    merged = resolve_image(
        ImageSettings(environment={"A": "high", "C": "3"}),
        None,
        ImageSettings(environment={"A": "low", "B": "2"}),
    )
    assert merged is not None
    assert merged.environment == {"A": "high", "B": "2", "C": "3"}


def test_resolve_image_nothing_set() -> None:
    assert resolve_image() is None
    assert resolve_image(None, ImageSettings()) is None


def test_layering_through_resolve_settings() -> None:
    configure(image={"environment": {"LOG_LEVEL": "INFO"}, "requirements": ["httpx"]})
    resolved = resolve_settings(
        run={"image": {"apt_packages": ["ffmpeg"]}},
        decorator={"image": "python:3.12-slim"},
    )
    assert resolved.image == {
        "base_image": "python:3.12-slim",
        "requirements": ["httpx", SDK],
        "environment": {"LOG_LEVEL": "INFO"},
        "apt_packages": ["ffmpeg"],
    }
    assert resolved.sources["image"] == "run+decorator+configure"


def test_overridden_levels_are_not_credited() -> None:
    configure(image="low")
    resolved = resolve_settings(run={"image": "high"})
    assert resolved.sources["image"] == "run"


# --------------------------------------------------------------------------------------
# SDK requirement
# --------------------------------------------------------------------------------------


def test_sdk_requirement_appended() -> None:
    assert frozen_image(ImageSettings(requirements=["httpx"]))["requirements"] == ["httpx", SDK]
    assert frozen_image(ImageSettings(base_image="b"))["requirements"] == [SDK]


def test_sdk_requirement_not_added_with_dockerfile() -> None:
    data = frozen_image(ImageSettings(dockerfile="Dockerfile", requirements=["httpx"]))
    assert data["requirements"] == ["httpx"]
    assert "requirements" not in frozen_image(ImageSettings(dockerfile="Dockerfile"))


@pytest.mark.parametrize(
    "existing",
    ["kitaru", "kitaru>=0.2.0", "Kitaru==1.0", "kitaru[postgres]>=0.1", "kitaru @ git+https://x/y"],
)
def test_sdk_requirement_not_duplicated(existing: str) -> None:
    data = frozen_image(ImageSettings(requirements=[existing, "httpx"]))
    assert data["requirements"] == [existing, "httpx"]


def test_similar_package_names_are_not_kitaru() -> None:
    assert not requirements_include_kitaru(["kitaru-extras", "kitarus", "not-kitaru"])
    data = frozen_image(ImageSettings(requirements=["kitaru-extras"]))
    assert data["requirements"] == ["kitaru-extras", SDK]


# --------------------------------------------------------------------------------------
# Redaction
# --------------------------------------------------------------------------------------


def test_secret_looking_environment_values_are_redacted() -> None:
    image = ImageSettings(
        environment={
            "OPENAI_API_KEY": "sk-1",
            "github_token": "t",
            "DB_PASSWORD": "p",
            "LEGACY_PASSWD": "p",
            "MY_SECRET": "s",
            "GOOGLE_APPLICATION_CREDENTIALS": "/c.json",
            "Auth_Header": "a",
            "LOG_LEVEL": "INFO",
            "REGION": "eu",
        }
    )
    env = frozen_image(image)["environment"]
    assert env == {
        "OPENAI_API_KEY": "***",
        "github_token": "***",
        "DB_PASSWORD": "***",
        "LEGACY_PASSWD": "***",
        "MY_SECRET": "***",
        "GOOGLE_APPLICATION_CREDENTIALS": "***",
        "Auth_Header": "***",
        "LOG_LEVEL": "INFO",
        "REGION": "eu",
    }
    # The live settings keep the real values; only the record is redacted.
    assert image.environment is not None
    assert image.environment["OPENAI_API_KEY"] == "sk-1"


def test_secret_environment_from_is_kept() -> None:
    data = frozen_image(ImageSettings(secret_environment_from=["openai-creds"]))
    assert data["secret_environment_from"] == ["openai-creds"]
