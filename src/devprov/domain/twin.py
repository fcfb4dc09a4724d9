"""The device twin as IoT Hub keeps it: tags, desired and reported properties, versions, metadata.

A twin is a plain JSON document, so a store can keep it as it is:

    {"tags": {...},
     "properties": {"desired": {..., "$metadata": {...}, "$version": N},
                    "reported": {..., "$metadata": {...}, "$version": M}},
     "version": V}

Every function here returns a new document and never changes the one it is given, so a write
that is refused leaves the stored twin exactly as it was. Sources: iothub-device-mqtt.md §3.2-3.3
(DOC-TWIN, twin shapes and limits) and iothub-registry-rest.md §2 (PATCH / PUT /twins).
The limits themselves are in twin_limits.py; this module (about 300 lines) keeps the merge,
version and metadata rules together because each write applies all three.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Mapping
from typing import Any

from devprov.domain.errors import bad_request
from devprov.domain.twin_limits import (
    MAX_DESIRED_BYTES,
    MAX_REPORTED_BYTES,
    MAX_TAGS_BYTES,
    METADATA,
    VERSION,
    check_size,
    checked_object,
)
from devprov.domain.twin_limits import without_read_only as _content

Twin = dict[str, Any]

# A new identity's twin starts with desired and reported `$version: 1` (iothub-registry-rest.md
# §2.2, lifecycle-event example in DOC-REG); IoT Hub's own device GET shows the same.
FIRST_VERSION = 1

LAST_UPDATED = "$lastUpdated"
LAST_UPDATED_VERSION = "$lastUpdatedVersion"

TAGS_PATH = "tags"
DESIRED_PATH = "properties.desired"
REPORTED_PATH = "properties.reported"


# Building and changing twins -------------------------------------------------------------------


def new_twin(initial: Mapping[str, Any] | None, now: str) -> Twin:
    """The twin of a new identity, from an initialTwin as DPS receives it.

    `initial` is `{"tags": {...}, "properties": {"desired": {...}}}`, either part optional.
    DPS's own TwinState carries `$metadata`/`$version` inside tags and desired; they are
    read-only elements, so they are dropped rather than refused. Nulls create nothing.
    """
    tags, desired = _service_sections(initial, "initialTwin", allow_reported=True)
    tag_content = _merge({}, {}, tags or {}, {})[0]
    check_size(tag_content, TAGS_PATH, MAX_TAGS_BYTES)
    content, metadata = _merge({}, {}, desired or {}, _desired_stamp(now, FIRST_VERSION))
    check_size(content, DESIRED_PATH, MAX_DESIRED_BYTES)
    return {
        "tags": tag_content,
        "properties": {
            "desired": _section(content, metadata, FIRST_VERSION),
            "reported": _section({}, _reported_stamp(now), FIRST_VERSION),
        },
        "version": FIRST_VERSION,
    }


def patch_desired(twin: Twin, patch: Any, now: str) -> tuple[Twin, dict[str, Any]]:
    """Merge a desired-properties patch; return the new twin and the delta to push to the device.

    The delta is the patch as written plus `"$version"`: the Python SDK reads `$version` from
    every push (iothub-device-mqtt.md §3.2), and nulls stay in so the device learns what was
    deleted.
    """
    content = checked_object(patch, DESIRED_PATH, read_only_allowed=True)
    result = copy.deepcopy(twin)
    delta = _write_desired(result, content, now)
    result["version"] += 1
    return result, delta


def patch_reported(twin: Twin, patch: Any, now: str) -> Twin:
    """Merge a device's reported-properties patch (`$iothub/twin/PATCH/properties/reported/`)."""
    content = checked_object(patch, REPORTED_PATH, read_only_allowed=False)
    result = copy.deepcopy(twin)
    section = result["properties"]["reported"]
    version = section[VERSION] + 1
    merged, metadata = _merge(_content(section), section[METADATA], content, _reported_stamp(now))
    check_size(merged, REPORTED_PATH, MAX_REPORTED_BYTES)
    result["properties"]["reported"] = _section(merged, metadata, version)
    result["version"] += 1
    return result


def patch_twin(twin: Twin, service_patch: Any, now: str) -> tuple[Twin, dict[str, Any] | None]:
    """PATCH /twins/{id}: merge `tags` and `properties.desired`; null deletes a key.

    Returns the new twin and the desired delta to push (None when the patch has no desired
    section). A section is written when the patch carries it, even as `{}`; a patch with
    neither changes nothing. The service may not write reported properties.
    """
    tags, desired = _service_sections(service_patch, "twin patch", allow_reported=False)
    if tags is None and desired is None:
        return copy.deepcopy(twin), None
    result = copy.deepcopy(twin)
    if tags is not None:
        merged_tags = _merge(result["tags"], {}, tags, {})[0]
        check_size(merged_tags, TAGS_PATH, MAX_TAGS_BYTES)
        result["tags"] = merged_tags
    delta = _write_desired(result, desired, now) if desired is not None else None
    result["version"] += 1
    return result, delta


def replace_twin(twin: Twin, service_twin: Any, now: str) -> tuple[Twin, dict[str, Any] | None]:
    """PUT /twins/{id}: replace `tags` and `properties.desired` wholesale; reported is untouched.

    DOC-TWIN lists "replace desired properties" and "replace tags" as two operations, so a
    section the body leaves out is kept as it is. `properties.reported` and the identity fields
    (deviceId, etag, status, ...) are ignored: clients send back what GET /twins gave them.

    The delta pushed to the device is the new desired document with a null for every key it
    no longer has, so a device applying it as a merge patch (as every SDK sample does) ends up
    with exactly the new document.
    """
    tags, desired = _service_sections(service_twin, "twin", allow_reported=True)
    if tags is None and desired is None:
        return copy.deepcopy(twin), None
    result = copy.deepcopy(twin)
    if tags is not None:
        new_tags = _merge({}, {}, tags, {})[0]
        check_size(new_tags, TAGS_PATH, MAX_TAGS_BYTES)
        result["tags"] = new_tags
    delta = None
    if desired is not None:
        section = result["properties"]["desired"]
        version = section[VERSION] + 1
        content, metadata = _merge({}, {}, desired, _desired_stamp(now, version))
        check_size(content, DESIRED_PATH, MAX_DESIRED_BYTES)
        delta = _replacement(_content(section), content)
        delta[VERSION] = version
        result["properties"]["desired"] = _section(content, metadata, version)
    result["version"] += 1
    return result, delta


# Views -----------------------------------------------------------------------------------------


def device_document(twin: Twin) -> dict[str, Any]:
    """What a device's `$iothub/twin/GET/` is answered with: desired and reported with `$version`.

    No `$metadata` and no tags: that is the body IoT Hub itself answers
    (`{"desired":{"$version":1},"reported":{"$version":1}}` for a new device, and the DOC-MQTT
    example in iothub-device-mqtt.md §3.3), and tags are not visible to devices (DOC-TWIN).
    `desired.$version` must be there: the Python SDK compares it with the last push it saw.
    """
    properties = twin["properties"]
    return {name: _without_metadata(properties[name]) for name in ("desired", "reported")}


def service_document(
    twin: Twin, device_id: str, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The Twin JSON of the service REST API (GET/PATCH/PUT /twins), iothub-registry-rest.md §2.2.

    `extra` supplies the identity fields the twin does not own (status, statusReason,
    connectionState, authenticationType, x509Thumbprint, capabilities, modelId, moduleId, ...)
    and may replace the etag; it cannot replace deviceId, version, tags or properties.
    """
    document: dict[str, Any] = {"deviceId": device_id, "etag": twin_etag(twin)}
    document.update(extra or {})
    properties = twin["properties"]
    document.update(
        deviceId=device_id,
        version=twin["version"],
        tags=copy.deepcopy(twin["tags"]),
        properties={
            "desired": copy.deepcopy(properties["desired"]),
            "reported": copy.deepcopy(properties["reported"]),
        },
    )
    return document


def twin_etag(twin: Twin) -> str:
    """An etag that changes with every write: base64 of the twin version as 8 big-endian bytes.

    That is the shape of IoT Hub's own twin etags ("AAAAAAAAAAc=" is 7), and it needs no clock
    or random source, so the same twin always has the same etag.
    """
    return base64.b64encode(int(twin["version"]).to_bytes(8, "big")).decode("ascii")


# Writing sections ------------------------------------------------------------------------------


def _write_desired(twin: Twin, patch: dict[str, Any], now: str) -> dict[str, Any]:
    """Merge `patch` into `twin`'s desired properties in place; return the delta to push."""
    section = twin["properties"]["desired"]
    version = section[VERSION] + 1
    merged, metadata = _merge(
        _content(section), section[METADATA], patch, _desired_stamp(now, version)
    )
    check_size(merged, DESIRED_PATH, MAX_DESIRED_BYTES)
    twin["properties"]["desired"] = _section(merged, metadata, version)
    delta = copy.deepcopy(patch)
    delta[VERSION] = version
    return delta


def _merge(
    target: dict[str, Any],
    metadata: dict[str, Any],
    patch: Mapping[str, Any],
    stamp: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """JSON merge patch (RFC 7386) of `patch` into `target`, with the twin metadata alongside.

    Objects merge key by key, null removes a key, anything else (arrays included) replaces the
    old value. Every level the patch touches gets `stamp` (`$lastUpdated`, and for desired
    `$lastUpdatedVersion`) in its metadata; untouched keys keep theirs (DOC-TWIN "Device twin
    metadata"). Neither input is changed.
    """
    result = dict(target)
    result_metadata = dict(metadata)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
            result_metadata.pop(key, None)
        elif isinstance(value, dict):
            old = result.get(key)
            old_metadata = result_metadata.get(key)
            if not isinstance(old, dict):  # an object replaces a scalar or an array
                old, old_metadata = {}, {}
            elif not isinstance(old_metadata, dict):
                old_metadata = {}
            result[key], result_metadata[key] = _merge(old, old_metadata, value, stamp)
        else:
            result[key] = copy.deepcopy(value)
            result_metadata[key] = dict(stamp)
    result_metadata.update(stamp)
    return result, result_metadata


def _replacement(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The new document plus a null for each key of `old` it lacks, at every depth."""
    delta = copy.deepcopy(dict(new))
    for key, old_value in old.items():
        if key not in new:
            delta[key] = None
        elif isinstance(old_value, dict) and isinstance(new[key], dict):
            delta[key] = _replacement(old_value, new[key])
    return delta


def _section(content: dict[str, Any], metadata: dict[str, Any], version: int) -> dict[str, Any]:
    return {**content, METADATA: metadata, VERSION: version}


def _without_metadata(section: Mapping[str, Any]) -> dict[str, Any]:
    return {**copy.deepcopy(_content(section)), VERSION: section[VERSION]}


def _desired_stamp(now: str, version: int) -> dict[str, Any]:
    # Desired metadata carries the version of the write at each level, reported only the time
    # (DOC-TWIN metadata example; DPS's TwinState example shows $lastUpdatedVersion likewise).
    return {LAST_UPDATED: now, LAST_UPDATED_VERSION: version}


def _reported_stamp(now: str) -> dict[str, Any]:
    return {LAST_UPDATED: now}


# Reading service bodies ------------------------------------------------------------------------


def _service_sections(
    body: Any, what: str, *, allow_reported: bool
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The checked `tags` and `properties.desired` of a service body (None when absent or null).

    Both are checked before either is used, so a bad desired leaves the tags unwritten too.
    """
    if body is None:
        return None, None
    if not isinstance(body, Mapping):
        raise bad_request(f"{what}: must be a JSON object")
    properties = body.get("properties")
    if properties is not None and not isinstance(properties, Mapping):
        raise bad_request("properties: must be a JSON object")
    properties = properties or {}
    if not allow_reported and properties.get("reported") not in (None, {}):
        raise bad_request(
            f"{REPORTED_PATH}: the service may not write reported properties;"
            " only the device reports them"
        )
    tags, desired = body.get("tags"), properties.get("desired")
    return (
        None if tags is None else checked_object(tags, TAGS_PATH, read_only_allowed=True),
        None if desired is None else checked_object(desired, DESIRED_PATH, read_only_allowed=True),
    )
