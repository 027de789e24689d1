"""Status codes: how a carrier's code is normalised, whether it means success, and its text.

This module owns the one success rule (only ``DELIVRD`` is success) and the catalogue of
human descriptions, in Chinese and English, that protocols put beside a code. The
defaults can be extended or overridden per deployment with a JSON file of the same
shape as ``extra``: ``{"CODE": {"zh": "...", "en": "..."}}``.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from dlrpush.errors import ConfigError

SUCCESS_CODE = "DELIVRD"

_DEFAULTS: dict[str, dict[str, str]] = {
    # The DELIVRD and MSBLACK Chinese texts are the provider's own, copied exactly.
    "DELIVRD": {"zh": "用户接收成功", "en": "delivered to the handset"},
    "MSBLACK": {"zh": "手机在运营商防骚扰黑名单", "en": "on the carrier's anti-spam blacklist"},
    "UNDELIV": {"zh": "消息无法送达", "en": "undeliverable"},
    "EXPIRED": {"zh": "消息已过期，有效期内未送达", "en": "expired before it could be delivered"},
    "REJECTD": {"zh": "消息被拒绝", "en": "rejected"},
    "DELETED": {"zh": "消息已被删除", "en": "deleted"},
    "UNKNOWN": {"zh": "状态未知", "en": "unknown status"},
    "ACCEPTD": {"zh": "消息已被接受", "en": "accepted, not yet delivered"},
    "ENROUTE": {"zh": "消息正在投递中", "en": "en route"},
    "BLACK": {"zh": "号码在黑名单中", "en": "number is blacklisted"},
    "MK:0001": {"zh": "未知用户（空号）", "en": "unknown subscriber (number not in use)"},
    "MI:0024": {"zh": "用户关机或不在服务区", "en": "handset switched off or out of coverage"},
    "MN:0001": {"zh": "空号", "en": "number not in use"},
    "MA:0001": {"zh": "全局黑名单号码", "en": "number is on the global blacklist"},
    "HD:0001": {"zh": "移动黑名单", "en": "number is on China Mobile's blacklist"},
    "MC:0151": {"zh": "短信中心未回状态报告", "en": "no status report from the SMS centre"},
}


def normalise_status(code: str) -> str:
    return code.strip().upper()


def is_success(status: str) -> bool:
    return normalise_status(status) == SUCCESS_CODE


class Catalogue:
    """Code -> {language -> text}; ``extra`` entries override the defaults per language."""

    def __init__(self, extra: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self._texts = {code: dict(texts) for code, texts in _DEFAULTS.items()}
        for code, texts in (extra or {}).items():
            self._texts.setdefault(normalise_status(code), {}).update(texts)

    @classmethod
    def from_file(cls, path: str) -> Catalogue:
        try:
            with open(path, "rb") as f:
                data = orjson.loads(f.read())
        except OSError as e:
            raise ConfigError(f"status catalogue {path}: cannot read: {e.strerror}") from None
        except orjson.JSONDecodeError as e:
            raise ConfigError(f"status catalogue {path}: not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"status catalogue {path}: must be a JSON object of code -> texts")
        for code, texts in data.items():
            if not code.strip() or not isinstance(texts, dict):
                raise ConfigError(
                    f"status catalogue {path}: entry {code!r} must be a non-empty code mapped "
                    'to an object like {"zh": "...", "en": "..."}'
                )
            for lang, text in texts.items():
                if not isinstance(text, str):
                    raise ConfigError(
                        f"status catalogue {path}: {code!r} {lang!r} text must be a string"
                    )
        return cls(data)

    def knows(self, status: str) -> bool:
        return normalise_status(status) in self._texts

    def describe(self, status: str, lang: str = "zh") -> str:
        code = normalise_status(status)
        texts = self._texts.get(code, {})
        generic = f"status {code}" if lang == "en" else f"状态码 {code}"
        return texts.get(lang) or texts.get("zh") or texts.get("en") or generic


DEFAULT_CATALOGUE = Catalogue()
