"""The device twin: merge patches, versions, metadata, the device and service views, and limits.

Examples come from iothub-device-mqtt.md §3 and the DOC-TWIN article it cites.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devprov.domain.errors import DpsError
from devprov.domain.twin import (
    Twin,
    device_document,
    new_twin,
    patch_desired,
    patch_reported,
    patch_twin,
    replace_twin,
    service_document,
    twin_etag,
)
from devprov.domain.twin_limits import MAX_INTEGER, MIN_INTEGER, twin_size

T0 = "2024-05-01T12:00:00.000Z"
T1 = "2024-05-01T12:00:01.000Z"
T2 = "2024-05-01T12:00:02.000Z"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 as the RFC states it, to check the module against."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def nested_lists(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def content(section: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in section.items() if k not in ("$metadata", "$version")}


def refused(action: Any, *args: Any) -> DpsError:
    with pytest.raises(DpsError) as caught:
        action(*args)
    assert (caught.value.status, caught.value.error_code) == (400, 400004)
    return caught.value


@pytest.fixture
def twin() -> Twin:
    initial = {
        "tags": {"deploymentLocation": {"building": "43", "floor": "1"}},
        "properties": {
            "desired": {"telemetryConfig": {"sendFrequency": "5m"}, "existingProperty": 1}
        },
    }
    return new_twin(initial, T0)


# new_twin --------------------------------------------------------------------------------------


def test_a_new_twin_without_initial_state_matches_what_iot_hub_creates() -> None:
    assert new_twin(None, T0) == {
        "tags": {},
        "properties": {
            "desired": {"$metadata": {"$lastUpdated": T0, "$lastUpdatedVersion": 1}, "$version": 1},
            "reported": {"$metadata": {"$lastUpdated": T0}, "$version": 1},
        },
        "version": 1,
    }


def test_a_new_twin_keeps_the_initial_tags_and_desired_with_metadata_per_key(twin: Twin) -> None:
    desired = twin["properties"]["desired"]
    assert twin["tags"] == {"deploymentLocation": {"building": "43", "floor": "1"}}
    assert content(desired) == {"telemetryConfig": {"sendFrequency": "5m"}, "existingProperty": 1}
    stamp = {"$lastUpdated": T0, "$lastUpdatedVersion": 1}
    assert desired["$metadata"] == {
        "telemetryConfig": {"sendFrequency": stamp, **stamp},
        "existingProperty": stamp,
        **stamp,
    }
    assert desired["$version"] == 1


def test_a_new_twin_drops_the_read_only_parts_of_a_dps_twin_state() -> None:
    """The TwinState example of the DPS service SDK carries $metadata and $version."""
    meta = {"$lastUpdated": "2017-09-21T02:07:44.238Z", "$lastUpdatedVersion": 4}
    initial = {
        "tags": {"SpeedUnity": "MPH", "$metadata": {**meta, "SpeedUnity": meta}, "$version": 4},
        "properties": {
            "desired": {
                "MaxSpeed": {"Value": 500, "NewValue": 300},
                "$metadata": {**meta, "MaxSpeed": {**meta, "Value": meta, "NewValue": meta}},
                "$version": 4,
            }
        },
    }
    twin = new_twin(initial, T0)
    assert twin["tags"] == {"SpeedUnity": "MPH"}
    assert content(twin["properties"]["desired"]) == {"MaxSpeed": {"Value": 500, "NewValue": 300}}
    assert twin["properties"]["desired"]["$version"] == 1


def test_a_new_twin_takes_either_part_alone_and_nulls_create_nothing() -> None:
    assert new_twin({"tags": {"a": 1, "b": None}}, T0)["tags"] == {"a": 1}
    only_desired = new_twin({"properties": {"desired": {"x": {"y": None}}}}, T0)
    assert only_desired["tags"] == {}
    assert content(only_desired["properties"]["desired"]) == {"x": {}}


def test_a_bad_initial_twin_is_refused() -> None:
    error = refused(new_twin, {"properties": {"desired": {"bad key": 1}}}, T0)
    assert error.message == "properties.desired.bad key: keys may not contain spaces"


# patch_desired ---------------------------------------------------------------------------------


def test_desired_patch_merges_deletes_and_bumps_both_versions(twin: Twin) -> None:
    """DOC-TWIN's "partially update" example."""
    patch = {
        "newProperty": {"nestedProperty": "newValue"},
        "existingProperty": "otherNewValue",
        "telemetryConfig": None,
    }
    new, delta = patch_desired(twin, patch, T1)

    desired = new["properties"]["desired"]
    assert content(desired) == {
        "existingProperty": "otherNewValue",
        "newProperty": {"nestedProperty": "newValue"},
    }
    assert desired["$version"] == 2
    assert new["version"] == 2
    assert new["properties"]["reported"] == twin["properties"]["reported"]
    assert new["tags"] == twin["tags"]
    assert delta == {**patch, "$version": 2}


def test_the_delta_keeps_nulls_and_carries_the_new_version(twin: Twin) -> None:
    """The push body of DOC-MQTT: {"telemetrySendFrequency":"5m","route":null,"$version":8}."""
    for _ in range(6):
        twin, _delta = patch_desired(twin, {"route": "a"}, T1)
    _, delta = patch_desired(twin, {"telemetrySendFrequency": "5m", "route": None}, T2)
    assert json.dumps(delta, separators=(",", ":")) == (
        '{"telemetrySendFrequency":"5m","route":null,"$version":8}'
    )


def test_desired_metadata_is_restamped_only_where_the_patch_touched(twin: Twin) -> None:
    new, _ = patch_desired(twin, {"telemetryConfig": {"status": "on"}}, T1)
    metadata = new["properties"]["desired"]["$metadata"]
    now, then = (
        {"$lastUpdated": T1, "$lastUpdatedVersion": 2},
        {"$lastUpdated": T0, "$lastUpdatedVersion": 1},
    )
    assert metadata["telemetryConfig"] == {"sendFrequency": then, "status": now, **now}
    assert metadata["existingProperty"] == then
    assert metadata["$lastUpdated"] == T1 and metadata["$lastUpdatedVersion"] == 2


def test_objects_replace_scalars_and_scalars_or_arrays_replace_objects(twin: Twin) -> None:
    new, _ = patch_desired(
        twin, {"existingProperty": {"now": "an object"}, "telemetryConfig": [1, None, {"a": 1}]}, T1
    )
    desired = new["properties"]["desired"]
    assert desired["existingProperty"] == {"now": "an object"}
    assert desired["telemetryConfig"] == [1, None, {"a": 1}]
    stamp = {"$lastUpdated": T1, "$lastUpdatedVersion": 2}
    assert desired["$metadata"]["telemetryConfig"] == stamp
    assert desired["$metadata"]["existingProperty"] == {"now": stamp, **stamp}


def test_a_patch_never_changes_the_twin_it_was_given(twin: Twin) -> None:
    before = copy.deepcopy(twin)
    patch = {"telemetryConfig": {"sendFrequency": None}, "list": [1]}
    new, delta = patch_desired(twin, patch, T1)
    delta["list"].append(2)
    assert twin == before
    assert new["properties"]["desired"]["list"] == [1]
    assert patch == {"telemetryConfig": {"sendFrequency": None}, "list": [1]}


# patch_reported --------------------------------------------------------------------------------


def test_reported_patch_merges_and_bumps_reported_version_only(twin: Twin) -> None:
    new = patch_reported(twin, {"telemetryConfig": {"sendFrequency": "5m", "status": "ok"}}, T1)
    new = patch_reported(new, {"batteryLevel": 55, "telemetryConfig": {"status": None}}, T2)

    reported = new["properties"]["reported"]
    assert content(reported) == {"telemetryConfig": {"sendFrequency": "5m"}, "batteryLevel": 55}
    assert reported["$version"] == 3
    assert new["version"] == 3
    assert new["properties"]["desired"] == twin["properties"]["desired"]
    assert reported["$metadata"] == {
        "telemetryConfig": {"sendFrequency": {"$lastUpdated": T1}, "$lastUpdated": T2},
        "batteryLevel": {"$lastUpdated": T2},
        "$lastUpdated": T2,
    }


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"a.b": 1}, "properties.reported.a.b: keys may not contain '.'"),
        ({"$version": 3}, "properties.reported.$version: keys may not contain '$'"),
        ([{"a": 1}], "properties.reported: must be a JSON object"),
        ("{}", "properties.reported: must be a JSON object"),
        (None, "properties.reported: must be a JSON object"),
    ],
)
def test_a_refused_reported_patch_leaves_the_twin_unchanged(
    twin: Twin, patch: Any, message: str
) -> None:
    before = copy.deepcopy(twin)
    assert refused(patch_reported, twin, patch, T1).message == message
    assert twin == before


# patch_twin ------------------------------------------------------------------------------------


def test_service_patch_merges_tags_and_desired_in_one_write(twin: Twin) -> None:
    body = {
        "tags": {"deploymentLocation": {"floor": None, "room": "7"}, "owner": "ops"},
        "properties": {"desired": {"existingProperty": 2}},
    }
    new, delta = patch_twin(twin, body, T1)
    assert new["tags"] == {"deploymentLocation": {"building": "43", "room": "7"}, "owner": "ops"}
    assert new["properties"]["desired"]["existingProperty"] == 2
    assert delta == {"existingProperty": 2, "$version": 2}
    assert new["version"] == 2


def test_a_tags_only_patch_pushes_nothing_and_keeps_the_desired_version(twin: Twin) -> None:
    new, delta = patch_twin(twin, {"tags": {"owner": "ops"}}, T1)
    assert delta is None
    assert new["properties"]["desired"] == twin["properties"]["desired"]
    assert new["version"] == 2


def test_an_empty_patch_changes_nothing(twin: Twin) -> None:
    assert patch_twin(twin, {}, T1) == (twin, None)
    assert patch_twin(twin, {"deviceId": "x", "properties": {}}, T1) == (twin, None)


def test_the_service_may_not_patch_reported_properties(twin: Twin) -> None:
    before = copy.deepcopy(twin)
    body = {"tags": {"a": 1}, "properties": {"reported": {"batteryLevel": 1}}}
    error = refused(patch_twin, twin, body, T1)
    assert error.message.startswith("properties.reported: the service may not write")
    assert twin == before


def test_a_bad_desired_part_keeps_the_tags_unwritten_too(twin: Twin) -> None:
    before = copy.deepcopy(twin)
    body = {"tags": {"owner": "ops"}, "properties": {"desired": {"x": float("nan")}}}
    error = refused(patch_twin, twin, body, T1)
    assert error.message == "properties.desired.x: numbers must be finite (no NaN or Infinity)"
    assert twin == before


def test_service_bodies_that_are_not_objects_are_refused(twin: Twin) -> None:
    assert refused(patch_twin, twin, [1], T1).message == "twin patch: must be a JSON object"
    assert refused(patch_twin, twin, {"properties": 1}, T1).message == (
        "properties: must be a JSON object"
    )
    assert refused(patch_twin, twin, {"tags": "x"}, T1).message == "tags: must be a JSON object"


# replace_twin ----------------------------------------------------------------------------------


def test_replace_swaps_tags_and_desired_and_keeps_reported(twin: Twin) -> None:
    twin = patch_reported(twin, {"batteryLevel": 55}, T1)
    body = {"tags": {"owner": "ops"}, "properties": {"desired": {"telemetryConfig": {"x": 1}}}}
    new, delta = replace_twin(twin, body, T2)

    assert new["tags"] == {"owner": "ops"}
    desired = new["properties"]["desired"]
    assert content(desired) == {"telemetryConfig": {"x": 1}}
    assert desired["$version"] == 2
    assert desired["$metadata"]["$lastUpdated"] == T2
    assert new["properties"]["reported"] == twin["properties"]["reported"]
    assert new["version"] == twin["version"] + 1
    # Nulls for what is gone, so a device merging the push ends with the new document.
    assert delta == {
        "telemetryConfig": {"x": 1, "sendFrequency": None},
        "existingProperty": None,
        "$version": 2,
    }


def test_replace_accepts_what_get_twins_returned(twin: Twin) -> None:
    """Service SDKs replace by sending back a fetched Twin, read-only parts and all."""
    twin = patch_reported(twin, {"batteryLevel": 55}, T1)
    fetched = service_document(twin, "devA", {"status": "enabled", "connectionState": "connected"})
    fetched["properties"]["desired"]["telemetryConfig"] = {"sendFrequency": "1m"}
    new, delta = replace_twin(twin, fetched, T2)
    assert content(new["properties"]["desired"]) == {
        "telemetryConfig": {"sendFrequency": "1m"},
        "existingProperty": 1,
    }
    assert new["properties"]["reported"] == twin["properties"]["reported"]
    assert delta is not None and delta["$version"] == 2


def test_replace_keeps_a_section_the_body_leaves_out(twin: Twin) -> None:
    new, delta = replace_twin(twin, {"tags": {}}, T1)
    assert new["tags"] == {}
    assert new["properties"]["desired"] == twin["properties"]["desired"]
    assert delta is None


json_keys = st.text(st.characters(codec="utf-8", exclude_characters=".$ "), min_size=1).filter(
    lambda key: not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in key)
)
json_leaves = st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=5)
json_objects = st.recursive(
    st.dictionaries(json_keys, json_leaves, max_size=4),
    lambda children: st.dictionaries(json_keys, json_leaves | children, max_size=4),
    max_leaves=12,
)


@given(old=json_objects, new=json_objects)
def test_merging_the_replace_delta_gives_the_new_document(
    old: dict[str, Any], new: dict[str, Any]
) -> None:
    twin = new_twin({"properties": {"desired": old}}, T0)
    replaced, delta = replace_twin(twin, {"properties": {"desired": new}}, T1)
    assert delta is not None
    delta.pop("$version")
    expected = content(replaced["properties"]["desired"])
    assert merge_patch(content(twin["properties"]["desired"]), delta) == expected
    assert expected == merge_patch({}, new)


@given(old=json_objects, patch=json_objects)
def test_a_desired_patch_is_an_rfc_7386_merge(old: dict[str, Any], patch: dict[str, Any]) -> None:
    twin = new_twin({"properties": {"desired": old}}, T0)
    new, _ = patch_desired(twin, patch, T1)
    expected = merge_patch(content(twin["properties"]["desired"]), patch)
    assert content(new["properties"]["desired"]) == expected


# Views -----------------------------------------------------------------------------------------


def test_device_get_of_a_new_twin_is_what_iot_hub_answers() -> None:
    body = device_document(new_twin(None, T0))
    assert json.dumps(body, separators=(",", ":")) == (
        '{"desired":{"$version":1},"reported":{"$version":1}}'
    )


def test_device_get_has_no_tags_or_metadata_and_is_a_copy(twin: Twin) -> None:
    twin = patch_reported(twin, {"batteryLevel": 55}, T1)
    body = device_document(twin)
    assert body == {
        "desired": {
            "telemetryConfig": {"sendFrequency": "5m"},
            "existingProperty": 1,
            "$version": 1,
        },
        "reported": {"batteryLevel": 55, "$version": 2},
    }
    body["desired"]["telemetryConfig"]["sendFrequency"] = "changed"
    assert twin["properties"]["desired"]["telemetryConfig"]["sendFrequency"] == "5m"


def test_service_document_has_the_twin_and_the_identity_fields(twin: Twin) -> None:
    extra = {
        "status": "enabled",
        "authenticationType": "sas",
        "x509Thumbprint": {"primaryThumbprint": None, "secondaryThumbprint": None},
        "capabilities": {"iotEdge": False},
        "connectionState": "Disconnected",
        "version": 99,
        "tags": {"forged": True},
    }
    document = service_document(twin, "devA", extra)
    assert list(document)[:2] == ["deviceId", "etag"]
    assert document["deviceId"] == "devA"
    assert document["etag"] == "AAAAAAAAAAE="
    assert document["version"] == 1
    assert document["tags"] == twin["tags"]
    assert document["properties"] == twin["properties"]
    assert document["capabilities"] == {"iotEdge": False}
    assert document["authenticationType"] == "sas"
    assert service_document(twin, "devA", {"etag": "from-store"})["etag"] == "from-store"


def test_the_etag_changes_with_every_write(twin: Twin) -> None:
    assert twin_etag(twin) == "AAAAAAAAAAE="
    new = patch_reported(twin, {"a": 1}, T1)
    assert twin_etag(new) == "AAAAAAAAAAI="
    assert twin_etag(patch_twin(new, {"tags": {"b": 1}}, T2)[0]) == "AAAAAAAAAAM="


# Validation: one refused and one accepted example per rule -------------------------------------


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"": 1}, "properties.reported: keys may not be empty"),
        ({"é" * 512 + "a": 1}, "keys may not be longer than 1024 bytes in UTF-8"),
        ({"a\x01": 1}, "keys may not contain control characters"),
        ({"a\x7f": 1}, "keys may not contain control characters"),
        ({"a\x85": 1}, "keys may not contain control characters"),
        ({"a.b": 1}, "keys may not contain '.'"),
        ({"$a": 1}, "keys may not contain '$'"),
        ({"a b": 1}, "keys may not contain spaces"),
        ({"a\ud800": 1}, "keys must be valid Unicode (no lone surrogates)"),
        ({"a": (1, 2)}, "values must be a boolean, number, string, null, object or array"),
        ({"a": b"x"}, "values must be a boolean, number, string, null, object or array"),
        ({"a": MAX_INTEGER + 1}, "integers must be between"),
        ({"a": MIN_INTEGER - 1}, "integers must be between"),
        ({"a": float("inf")}, "numbers must be finite"),
        ({"a": float("-inf")}, "numbers must be finite"),
        ({"a": float("nan")}, "numbers must be finite"),
        ({"a": "é" * 2048 + "a"}, "strings may not be longer than 4096 bytes in UTF-8"),
        ({"a": "\ud800"}, "strings must be valid Unicode (no lone surrogates)"),
        ({"a": nested_lists(11)}, "objects and arrays may nest at most 10 deep"),
        ({1: "a"}, "keys must be strings"),
    ],
)
def test_each_rule_refuses(twin: Twin, patch: dict[Any, Any], message: str) -> None:
    assert message in refused(patch_reported, twin, patch, T1).message


@pytest.mark.parametrize(
    "patch",
    [
        {"a": 1},
        {"é" * 512: 1},
        {"température-ambiante_°C": "√", "a\u00a0b": 1, "a:b@c": 1},
        {"a": True, "b": 1.5, "c": "s", "d": None, "e": {"f": [1, "x", None, {"g": False}]}},
        {"a": MAX_INTEGER, "b": MIN_INTEGER, "c": 1e300},
        {"a": "é" * 2048, "b": "line\nbreak\ttab\x85"},
        {"a": nested_lists(10)},
    ],
)
def test_each_rule_accepts(twin: Twin, patch: dict[str, Any]) -> None:
    reported = patch_reported(twin, patch, T1)["properties"]["reported"]
    assert content(reported) == merge_patch({}, patch)


def test_depth_is_ten_objects_below_the_section_as_in_the_doc(twin: Twin) -> None:
    names = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
    tags: dict[str, Any] = {"property": "value"}
    for name in reversed(names):
        tags = {name: tags}
    assert patch_twin(twin, {"tags": tags}, T1)[0]["tags"]["one"]["two"]["three"]
    tags["one"]["two"]["three"]["four"]["five"]["six"]["seven"]["eight"]["nine"]["ten"] = {
        "eleven": {}
    }
    error = refused(patch_twin, twin, {"tags": tags}, T1)
    assert error.message == (
        "tags.one.two.three.four.five.six.seven.eight.nine.ten.eleven:"
        " objects and arrays may nest at most 10 deep"
    )


def test_errors_name_the_path_through_objects_and_arrays(twin: Twin) -> None:
    patch = {"a": {"list": [1, {"ok": 1}, {"bad key": 1}]}}
    error = refused(patch_desired, twin, patch, T1)
    assert error.message == "properties.desired.a.list[2].bad key: keys may not contain spaces"
    long_key = "k" * 2000
    message = refused(patch_desired, twin, {long_key: 1}, T1).message
    assert len(message) < 200 and message.endswith("bytes in UTF-8")


def test_size_counts_as_iot_hub_does() -> None:
    """DOC-TWIN: key and string UTF-8 bytes without control characters, numbers 8, booleans 4."""
    assert twin_size({"a": "xy", "n": 1, "f": 1.5, "b": True}) == (1 + 2) + (1 + 8) + (1 + 8) + 5
    assert twin_size({"é": "line\n"}) == 2 + 4
    assert twin_size({"o": {"p": [1, "ab", None]}}) == 1 + 1 + 8 + 2 + 4
    assert twin_size({"x": 1, "$version": 5, "$metadata": {"$lastUpdated": T0}}) == 9


@pytest.mark.parametrize(
    ("action", "section", "limit"),
    [
        (lambda twin, body: patch_twin(twin, {"tags": body}, T1), "tags", 8 * 1024),
        (lambda twin, body: patch_desired(twin, body, T1), "properties.desired", 32 * 1024),
        (lambda twin, body: patch_reported(twin, body, T1), "properties.reported", 32 * 1024),
    ],
)
def test_section_size_limits(twin: Twin, action: Any, section: str, limit: int) -> None:
    empty = new_twin(None, T0)
    strings = limit // 4096  # keys "k0".. of 2 bytes + 4094-byte strings fill the limit exactly
    full = {f"k{i}": "x" * 4094 for i in range(strings)}
    filled = action(empty, full)
    filled = filled if isinstance(filled, dict) else filled[0]
    before = copy.deepcopy(filled)

    error = refused(action, filled, {"z": True})
    assert error.message.startswith(f"{section}: may not be larger than {limit} bytes")
    assert filled == before
    # Measured after the merge: a patch that frees room first fits.
    assert action(filled, {"k0": None, "z": True})


def test_sizes_are_checked_on_a_new_twin_too() -> None:
    tags = {f"k{i}": "x" * 4094 for i in range(3)}
    assert refused(new_twin, {"tags": tags}, T0).message.startswith("tags: may not be larger")
