"""The Azure DPS schema (2021-10-01) as pydantic models: enrollments, groups, records, hubs."""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from devprov.domain.errors import DpsError, bad_request


class WireModel(BaseModel):
    """camelCase on the wire; fields devprov does not know yet are kept and echoed back."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="allow", validate_assignment=True
    )

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class SymmetricKeyAttestation(WireModel):
    primary_key: str | None = None
    secondary_key: str | None = None


class TpmAttestation(WireModel):
    endorsement_key: str
    storage_root_key: str | None = None


class X509Attestation(WireModel):
    client_certificates: dict[str, Any] | None = None
    signing_certificates: dict[str, Any] | None = None
    ca_references: dict[str, Any] | None = None


AttestationType = Literal["none", "tpm", "x509", "symmetricKey"]


class AttestationMechanism(WireModel):
    type: AttestationType
    tpm: TpmAttestation | None = None
    x509: X509Attestation | None = None
    symmetric_key: SymmetricKeyAttestation | None = None

    def without_secrets(self) -> AttestationMechanism:
        """GET and query answers name the attestation type but never carry keys (as DPS does)."""
        return AttestationMechanism(type=self.type, tpm=self.tpm, x509=self.x509)


class Capabilities(WireModel):
    iot_edge: bool = False


class ReprovisionPolicy(WireModel):
    update_hub_assignment: bool = True
    migrate_device_data: bool = True


class CustomAllocationDefinition(WireModel):
    """Where the custom policy asks: an http(s) webhook, or `allocator://NAME`, a function the
    operator configured at start. `webhookSecret` (devprov's) signs requests to this webhook
    instead of the server-wide secret; like keys, it is write-only."""

    webhook_url: str
    api_version: str
    webhook_secret: str | None = None


class PayloadRoute(WireModel):
    """devprov's extension: when the device payload matches `match` (a JSON Schema 2020-12),
    answer with this hub, initial twin and payload, without asking any allocator."""

    match: dict[str, Any] | bool
    iot_hub_host_name: str | None = None
    initial_twin: dict[str, Any] | None = None
    payload: Any = None


AllocationPolicy = Literal["hashed", "geoLatency", "static", "custom"]
ProvisioningStatus = Literal["enabled", "disabled"]
RegistrationStatus = Literal["unassigned", "assigning", "assigned", "failed", "disabled"]
Substatus = Literal[
    "initialAssignment", "deviceDataMigrated", "deviceDataReset", "reprovisionedToInitialAssignment"
]


class DeviceRegistrationState(WireModel):
    registration_id: str
    created_date_time_utc: str | None = None
    assigned_hub: str | None = None
    device_id: str | None = None
    status: RegistrationStatus = "unassigned"
    substatus: Substatus | None = None
    error_code: int | None = None
    error_message: str | None = None
    last_updated_date_time_utc: str | None = None
    etag: str | None = None
    payload: Any = None
    symmetric_key: dict[str, Any] | None = None
    x509: dict[str, Any] | None = None
    tpm: dict[str, Any] | None = None
    issued_certificate_chain: list[str] | None = None


class EnrollmentFields(WireModel):
    """What individual enrollments and enrollment groups share."""

    attestation: AttestationMechanism
    capabilities: Capabilities | None = None
    iot_hub_host_name: str | None = None
    initial_twin: dict[str, Any] | None = None
    etag: str | None = None
    provisioning_status: ProvisioningStatus | None = "enabled"
    reprovision_policy: ReprovisionPolicy | None = None
    created_date_time_utc: str | None = None
    last_updated_date_time_utc: str | None = None
    allocation_policy: AllocationPolicy | None = None
    iot_hubs: list[str] | None = None
    custom_allocation_definition: CustomAllocationDefinition | None = None
    # devprov's extensions (see docs/payload.md), and DPS's 2025-07-01-preview policy name.
    payload_schema: dict[str, Any] | bool | None = None
    payload_routes: list[PayloadRoute] | None = None
    credential_policy_name: str | None = None

    @property
    def enabled(self) -> bool:
        return self.provisioning_status != "disabled"

    @property
    def effective_reprovision_policy(self) -> ReprovisionPolicy:
        return self.reprovision_policy or ReprovisionPolicy()


class IndividualEnrollment(EnrollmentFields):
    registration_id: str
    device_id: str | None = None
    registration_state: DeviceRegistrationState | None = None
    optional_device_information: dict[str, Any] | None = None


class EnrollmentGroup(EnrollmentFields):
    enrollment_group_id: str


class LinkedHub(WireModel):
    """An IoT hub devprov may assign devices to (Azure manages these outside the data plane)."""

    host_name: str = Field(min_length=1, max_length=255)
    allocation_weight: int = Field(default=1, ge=1, le=1000)
    apply_allocation_policy: bool = True
    location: str | None = None
    connector: str = "builtin"
    connection_string: str | None = None

    def public_view(self) -> dict[str, Any]:
        """The hub as GET shows it: its connection string is write-only."""
        view = self.to_wire()
        view.pop("connectionString", None)
        return view


class ProvisioningServiceErrorDetails(WireModel):
    """The Azure error shape every refusal is answered with (see errors.py)."""

    error_code: int
    tracking_id: str
    message: str
    timestamp_utc: str | None = None
    info: dict[str, Any] | None = None


BulkMode = Literal["create", "update", "updateIfMatchETag", "delete"]


class BulkEnrollmentOperation(WireModel):
    mode: BulkMode
    enrollments: list[dict[str, Any]] | None = None
    enrollment_groups: list[dict[str, Any]] | None = None


ModelT = TypeVar("ModelT", bound=BaseModel)


def parse_model(model: type[ModelT], data: Any, what: str) -> ModelT:
    """Validate wire data, turning pydantic's complaint into a 400004 that names the bad fields."""
    if not isinstance(data, dict):
        raise bad_request(f"The {what} must be a JSON object.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, what) from None


def validation_error(exc: ValidationError, what: str) -> DpsError:
    problems = []
    for problem in exc.errors(include_url=False):
        location = ".".join(str(part) for part in problem["loc"]) or what
        problems.append(f"{location}: {problem['msg']}")
    return bad_request(f"The {what} is not valid: " + "; ".join(problems))
