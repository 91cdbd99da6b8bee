"""Registry secrets at rest: Fernet (AES-128-CBC + HMAC), keyed from settings.

The key comes from `LAYERLENS_FERNET_KEYS` (comma-separated, newest first, so keys can rotate) or,
when unset, is derived from `SECRET_KEY`.
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


@lru_cache(maxsize=1)
def _fernet() -> MultiFernet:
    keys = [k.strip() for k in getattr(settings, "FERNET_KEYS", []) if k.strip()]
    if not keys:
        derived = hashlib.sha256(("layerlens-credentials:" + settings.SECRET_KEY).encode()).digest()
        keys = [base64.urlsafe_b64encode(derived).decode()]
    return MultiFernet([Fernet(k.encode()) for k in keys])


def encrypt_secret(raw: str) -> str:
    return _fernet().encrypt(raw.encode()).decode()


def decrypt_secret(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise ValueError("stored credential cannot be decrypted with the configured keys") from exc
