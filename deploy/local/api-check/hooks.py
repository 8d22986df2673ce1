"""Schemathesis hooks for Herald's API check (deploy/local/api-check.sh).

Idempotency keys are stateful: a key reused with another body is refused
(422 idempotency_conflict), as API.md promises. Generated data reuses short
keys across unrelated requests, which is not how a client uses them, so each
request's keys are made unique here. The same holds for template names
(409 when the tenant has one of that name) and for template ids a message
names (they must exist: the check's own template of the message's channel
takes the place of a well-formed one). A template's parts are templates
themselves, which no JSON Schema can describe; a generated part is sent as a
raw block (`{% raw %}…{% endraw %}`), which compiles whatever it holds.
Everything else is sent as generated; malformed values stay, to be refused.
"""
import os
import re
import uuid

import schemathesis


def _valid_key(key):
    return isinstance(key, str) and 1 <= len(key) <= 255 and "\x00" not in key


def _unique(key):
    """A valid key made unique, still valid; an invalid one stays as it is,
    to be refused."""
    if not _valid_key(key):
        return key
    return key[: 255 - 33] + "-" + uuid.uuid4().hex


TEMPLATES = {
    "email": os.environ.get("HERALD_CHECK_TEMPLATE_EMAIL"),
    "wework": os.environ.get("HERALD_CHECK_TEMPLATE_WEWORK"),
    "webhook": os.environ.get("HERALD_CHECK_TEMPLATE_WEBHOOK"),
}
PARTS = ("subject", "text", "html", "markdown")
CARD = ("title", "description", "url", "btntxt")


def _fix_message(message):
    if not isinstance(message, dict):
        return
    if "idempotency_key" in message:
        message["idempotency_key"] = _unique(message["idempotency_key"])
    given = message.get("template_id")
    own = TEMPLATES.get(message.get("channel")) if isinstance(message.get("channel"), str) else None
    if own and isinstance(given, str) and UUID.match(given):
        message["template_id"] = own
        version = message.get("template_version")
        integral = isinstance(version, int) or (isinstance(version, float) and version.is_integer())
        if integral and not isinstance(version, bool) and 1 <= version <= 2147483647:
            message["template_version"] = 1


def _raw(value):
    if isinstance(value, str) and "\x00" not in value and "endraw" not in value:
        return "{% raw %}" + value + "{% endraw %}"
    return value


def _fix_template(body):
    for part in PARTS:
        if part in body:
            body[part] = _raw(body[part])
    card = body.get("textcard")
    if isinstance(card, dict):
        for part in CARD:
            if part in card:
                card[part] = _raw(card[part])
    name = body.get("name")
    if isinstance(name, str) and 1 <= len(name) <= 200 and "\x00" not in name:
        body["name"] = name[: 200 - 33] + "-" + uuid.uuid4().hex


UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


@schemathesis.hook
def map_case(ctx, case):
    body = case.body
    if isinstance(body, dict):
        _fix_message(body)
        messages = body.get("messages")
        if isinstance(messages, list):
            for message in messages:
                _fix_message(message)
        if case.path.startswith("/v1/templates"):
            _fix_template(body)
        # An id that must name something that exists: the check's own
        # tenant (a well-formed id only; a malformed one stays, to be refused).
        tenant = os.environ.get("HERALD_CHECK_TENANT_ID")
        given = body.get("tenant_id")
        if tenant and case.path == "/v1/admin/providers" and isinstance(given, str) and UUID.match(given):
            body["tenant_id"] = tenant
    headers = case.headers
    header = headers.get("Idempotency-Key") if headers else None
    # HTTP drops the spaces around a header value, and so does the producer.
    core = header.strip(" \t") if isinstance(header, str) else None
    if core and _valid_key(core):
        new = _unique(core)
        headers["Idempotency-Key"] = header.replace(core, new, 1)
        # A client that gives the key twice gives the same key.
        if isinstance(body, dict) and _valid_key(body.get("idempotency_key")):
            body["idempotency_key"] = new
    return case
