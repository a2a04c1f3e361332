"""The Content-Security-Policy header, which Django 5.2 does not set by itself."""

from collections.abc import Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse


def content_security_policy(get_response: Callable) -> Callable:
    """Middleware adding CONTENT_SECURITY_POLICY to responses that set none, sync or async."""
    policy = settings.CONTENT_SECURITY_POLICY

    if iscoroutinefunction(get_response):

        async def middleware(request: HttpRequest) -> HttpResponse:
            response = await get_response(request)
            if policy:
                response.headers.setdefault("Content-Security-Policy", policy)
            return response

        markcoroutinefunction(middleware)
    else:

        def middleware(request: HttpRequest) -> HttpResponse:
            response = get_response(request)
            if policy:
                response.headers.setdefault("Content-Security-Policy", policy)
            return response

    return middleware


content_security_policy.sync_capable = True
content_security_policy.async_capable = True
