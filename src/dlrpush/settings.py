"""Settings, read once into a frozen object: defaults < TOML file < ``DLRPUSH_*`` env < flags.

Nothing else in dlrpush reads the environment. Every setting has an env name that the
CLI's ``--help`` shows, and a bad value raises ``ConfigError`` naming the setting.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from dlrpush.errors import ConfigError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    store: str = "sqlite:///dlrpush.db"
    # Bearer token for /v1/; empty means no authentication (local use only).
    admin_token: str = ""
    # CIDRs callbacks may reach although private/loopback (e.g. "127.0.0.0/8").
    callback_allow: tuple[Network, ...] = ()
    # How long a report waits for its submission record before it is `unmatched`.
    hold_window_s: float = 3600.0
    default_region: str = "CN"
    receipt_tz: str = "Asia/Shanghai"
    catalogue: str = ""  # path of a JSON file extending the status-code catalogue
    dispatch: bool = True
    max_in_flight_total: int = 512
    linger_ms: float = 2.0  # how long a batch endpoint waits to fill a batch
    poll_interval_s: float = 1.0
    lease_margin_s: float = 30.0
    sqlite_synchronous: str = "FULL"
    max_items: int = 10_000
    max_body_bytes: int = 32 * 1024 * 1024
    log_level: str = "INFO"
    log_format: str = "text"  # "text" | "json"

    @property
    def hold_ms(self) -> int:
        return int(self.hold_window_s * 1000)


ENV_PREFIX = "DLRPUSH_"


def env_name(field_name: str) -> str:
    return ENV_PREFIX + field_name.upper()


def _label(field_name: str) -> str:
    """How an error names a setting: its name, and where it can be given."""
    return f"{field_name} ({env_name(field_name)})"


def parse_networks(value: str, setting: str = "callback_allow") -> tuple[Network, ...]:
    out = []
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            out.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ConfigError(f"{_label(setting)}: {part!r} is not a CIDR") from None
    return tuple(out)


def _coerce(name: str, raw: Any, default: Any) -> Any:
    where = _label(name)
    if name == "callback_allow":
        if isinstance(raw, list | tuple):
            raw = ",".join(str(x) for x in raw)
        if isinstance(raw, str):
            return parse_networks(raw, name)
        raise ConfigError(f"{where}: expected comma-separated CIDRs")
    if isinstance(default, bool):
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{where}: expected true or false, got {raw!r}")
    if isinstance(default, int):
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected an integer, got {raw!r}") from None
    if isinstance(default, float):
        try:
            return float(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {raw!r}") from None
    return str(raw)


def _check(s: Settings) -> Settings:
    if not 0 <= s.port <= 65535:
        raise ConfigError(f"{_label('port')}: {s.port} is not a port number")
    if s.hold_window_s < 0:
        raise ConfigError(f"{_label('hold_window_s')}: must not be negative")
    if s.max_in_flight_total < 1:
        raise ConfigError(f"{_label('max_in_flight_total')}: must be at least 1")
    if s.sqlite_synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
        raise ConfigError(f"{_label('sqlite_synchronous')}: one of OFF, NORMAL, FULL, EXTRA")
    if s.log_format not in ("text", "json"):
        raise ConfigError(f"{_label('log_format')}: one of text, json")
    try:
        from zoneinfo import ZoneInfo

        ZoneInfo(s.receipt_tz)
    except Exception:
        raise ConfigError(f"{_label('receipt_tz')}: unknown time zone {s.receipt_tz!r}") from None
    return s


def load_settings(
    env: Mapping[str, str],
    *,
    config_file: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build settings from a TOML file, the environment and explicit overrides, in that order."""
    defaults = Settings()
    values: dict[str, Any] = {}
    known = {f.name for f in fields(Settings)}
    if config_file:
        try:
            data = tomllib.loads(Path(config_file).read_text("utf-8"))
        except OSError as exc:
            raise ConfigError(f"config file {config_file}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {config_file}: {exc}") from None
        for key, raw in data.items():
            if key not in known:
                raise ConfigError(f"config file {config_file}: unknown setting {key!r}")
            values[key] = _coerce(key, raw, getattr(defaults, key))
    for name in known:
        raw = env.get(env_name(name))
        if raw is not None and raw != "":
            values[name] = _coerce(name, raw, getattr(defaults, name))
    for name, raw in (overrides or {}).items():
        if raw is not None:
            values[name] = _coerce(name, raw, getattr(defaults, name))
    return _check(Settings(**values))


def redact_url(url: str) -> str:
    """The URL with any password replaced, for logs and ready lines."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
