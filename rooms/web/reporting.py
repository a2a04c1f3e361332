"""What error pages and error reports show: Django masks settings, headers and variables by
name (KEY, PASS, TOKEN...); this also masks the password inside any URL, which no name gives
away (REDIS_URL, the channel layer's hosts, a local variable holding a connection URL)."""

import re
from typing import Any

from django.http import HttpRequest
from django.views.debug import SafeExceptionReporterFilter

# scheme://user:password@host: the password runs to the last "@" before the path, as in
# urllib.parse. The scheme's length is bounded so that a long word costs linear time.
URL_PASSWORD = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]{0,31}://[^:/?#@\s]*:)([^/?#\s]*)(?=@)")


def mask_url_passwords(text: str, substitute: str) -> str:
    """`text` with the password of every URL in it replaced by `substitute`."""
    if "://" not in text or "@" not in text:
        return text
    return URL_PASSWORD.sub(lambda match: match[1] + substitute, text)


class CredentialFilter(SafeExceptionReporterFilter):
    """Django's filter, plus URL passwords in settings, request headers and traceback
    variables (DEFAULT_EXCEPTION_REPORTER_FILTER)."""

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        # Django recurses into dicts, lists and tuples through this method: every string
        # inside a setting comes here.
        cleansed = super().cleanse_setting(key, value)
        if isinstance(cleansed, str):
            return mask_url_passwords(cleansed, self.cleansed_substitute)
        return cleansed

    def cleanse_special_types(self, request: HttpRequest | None, value: Any) -> Any:
        value = super().cleanse_special_types(request, value)
        if isinstance(value, str):
            return mask_url_passwords(value, self.cleansed_substitute)
        return value
