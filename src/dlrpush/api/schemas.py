"""Request bodies of the HTTP API and the rules they enforce at the door.

Validation happens here, before anything is stored: a batch with one bad item is
rejected whole. The uid rule of the ucloud contract is checked here and never by
trimming at push time.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dlrpush import retry
from dlrpush.catalogue import normalise_status
from dlrpush.errors import InvalidInput
from dlrpush.models import ReportState
from dlrpush.rules import uid_problem

Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")]
Text = Annotated[str, Field(max_length=256)]
# Bounds that keep integers inside the stores' signed 64-bit columns.
DbId = Annotated[int, Field(ge=1, le=2**63 - 1)]
Millis = Annotated[int, Field(ge=0, lt=10**15)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class AccountIn(_Strict):
    id: Id
    name: Annotated[str, Field(max_length=200)] = ""


class CredentialsIn(_Strict):
    receiver: Annotated[str, Field(max_length=128)] = ""
    pswd: Annotated[str, Field(max_length=256)] = ""


class _EndpointFields(_Strict):
    @field_validator("retry_schedule_s", check_fields=False)
    @classmethod
    def _schedule(cls, value: list[float] | None) -> list[float] | None:
        if value is None:
            return None
        try:
            return list(retry.validate_schedule(value))
        except InvalidInput as exc:
            raise ValueError(exc.message) from None


class EndpointIn(_EndpointFields):
    url: Annotated[str, Field(min_length=1, max_length=2048)]
    protocol: Literal["ucloud", "innopaas"]
    credentials: CredentialsIn | None = None
    batch_max: Annotated[int, Field(ge=1, le=1000)] = 100
    retry_schedule_s: list[float] = Field(default_factory=lambda: [1.0, 1.0, 1.0])
    timeout_s: Annotated[float, Field(gt=0, le=300)] = 5.0
    max_in_flight: Annotated[int, Field(ge=1, le=1024)] = 8
    enabled: bool = True
    description_lang: Literal["zh", "en"] = "zh"
    success_body_contains: Annotated[str, Field(min_length=1, max_length=256)] | None = None


class EndpointPatch(_EndpointFields):
    url: Annotated[str, Field(min_length=1, max_length=2048)] | None = None
    protocol: Literal["ucloud", "innopaas"] | None = None
    credentials: CredentialsIn | None = None
    batch_max: Annotated[int, Field(ge=1, le=1000)] | None = None
    retry_schedule_s: list[float] | None = None
    timeout_s: Annotated[float, Field(gt=0, le=300)] | None = None
    max_in_flight: Annotated[int, Field(ge=1, le=1024)] | None = None
    enabled: bool | None = None
    description_lang: Literal["zh", "en"] | None = None
    success_body_contains: Annotated[str, Field(min_length=1, max_length=256)] | None = None


class MessageIn(_Strict):
    msgid: Annotated[str, Field(min_length=1, max_length=64)]
    account: Annotated[str, Field(min_length=1, max_length=64)]
    phone: Annotated[str, Field(min_length=1, max_length=32, pattern=r"^\+?[0-9]{3,20}$")]
    segments: Annotated[int, Field(ge=1, le=255)] = 1
    uid: str | None = None
    batch_seq: Annotated[str, Field(max_length=64)] = ""
    request_time_ms: Annotated[int, Field(ge=0, lt=10**14)] | None = None
    unit_price: str | None = None
    currency: Annotated[str, Field(max_length=8)] = "CNY"
    access_number: Annotated[str, Field(max_length=64)] = ""
    mcc: Annotated[str, Field(max_length=3, pattern=r"^[0-9]*$")] = ""
    mnc: Annotated[str, Field(max_length=3, pattern=r"^[0-9]*$")] = ""
    operator: Annotated[str, Field(max_length=64)] = ""

    @field_validator("uid")
    @classmethod
    def _uid(cls, value: str | None) -> str | None:
        if value is not None:
            problem = uid_problem(value)
            if problem:
                raise ValueError(problem)
        return value

    @field_validator("unit_price")
    @classmethod
    def _price(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            price = Decimal(value)
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a decimal number") from None
        if not price.is_finite() or price < 0 or len(value) > 32 or "e" in value.lower():
            raise ValueError(f"{value!r} is not a plain non-negative decimal such as 0.05670")
        return value


class ReportIn(_Strict):
    msgid: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    status: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    report_time_ms: Annotated[int, Field(ge=0, lt=10**14)] | None = None
    error_code: Annotated[str, Field(max_length=32)] | None = None
    description: Text | None = None
    receipt: Annotated[str, Field(min_length=1, max_length=1024)] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> ReportIn:
        if self.receipt is None:
            if self.msgid is None:
                raise ValueError("give msgid and status, or receipt (SMPP receipt text)")
            if self.status is None:
                raise ValueError("status is required when there is no receipt text")
        if self.status is not None:
            self.status = normalise_status(self.status)
            if not self.status:
                raise ValueError("status is empty")
        return self


class ReplayIn(_Strict):
    account: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    endpoint: DbId | None = None
    state: ReportState | None = None
    since_ms: Millis | None = None
    until_ms: Millis | None = None
    msgids: (
        Annotated[
            list[Annotated[str, Field(min_length=1, max_length=64)]], Field(max_length=10_000)
        ]
        | None
    ) = None
